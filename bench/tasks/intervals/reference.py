def merge(intervals):
    out = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def overlaps(a, b):
    return a[0] <= b[1] and b[0] <= a[1]


def total_length(intervals):
    return sum(e - s for s, e in merge(intervals))


def gaps(intervals, start, end):
    out = []
    pos = start
    for s, e in merge(intervals):
        if e <= pos:
            continue
        if s >= end:
            break
        if s > pos:
            out.append((pos, s))
        pos = max(pos, e)
    if pos < end:
        out.append((pos, end))
    return out
