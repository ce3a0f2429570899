"""rcp settings: edit the values below. Every name can also be overridden by an environment variable
RCP_<NAME> (e.g. RCP_NUM_NODES=3) or by a command-line flag (--num-nodes 3). A bad value stops start-up
with one line naming the setting. Relative paths are relative to this file's directory."""

# --- swarm -----------------------------------------------------------------------------------------
NUM_NODES = 6  # node processes `python network.py` starts; ~0.8 GB RAM each with the 1.5B model (measured)
# where nodes listen: loopback only by default; e.g. ["/ip4/0.0.0.0/tcp/31337"] to accept other machines (then
# SWARM_KEY must be set: node.py refuses to listen beyond loopback without it, network.py warns)
HOST_MADDRS = ["/ip4/127.0.0.1/tcp/0"]  # see the comment above
ANNOUNCE_MADDRS = []  # addresses peers should dial, if different from HOST_MADDRS (NAT, other machines)
INITIAL_PEERS = []  # multiaddrs of a running swarm to join; empty starts a new swarm
RUN_DIR = ".rcp"  # swarm contact file (for submit_task.py) and per-node logs
# Who may use the swarm: every RPC and DHT message must prove this shared secret. Empty: network.py makes a
# random key per swarm and writes it into RUN_DIR/swarm.json (mode 0600), where submit_task.py finds it. Set it
# (better in the RCP_SWARM_KEY environment variable than here) to join machines: all nodes and clients need the same
# one.
SWARM_KEY = ""  # e.g. the output of: python -c 'import secrets; print(secrets.token_hex(32))'
# A root task keeps its entry node's model busy for its decide/plan/integrate calls; past this many at once the node
# answers "busy" and the client tries another node. Subtasks from peers are never refused (no delegation deadlock).
MAX_ROOT_TASKS = 2  # root tasks (submitted by clients) one node runs at once

# --- model -----------------------------------------------------------------------------------------
LLM_BACKEND = "llama"  # "llama" runs MODEL_PATH with llama-cpp; "scripted" is the test fake (needs LLM_SCRIPT)
LLM_SCRIPT = ""  # JSON file of canned replies for the scripted backend; unused with "llama"
# fetch the default with: python -m rcp.models fetch qwen2.5-coder-1.5b-instruct-q4_k_m
MODEL_PATH = "models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"  # GGUF chat model each node loads
# llama.cpp threads spin at barriers: oversubscribed cores collapse throughput (measured on 2 cores with one
# other busy process: 2 threads 2.2 tokens/s, 1 thread 10.4 tokens/s). So: 1 thread per generation, and at
# most GENERATION_SLOTS generations at once across all nodes of this host.
N_THREADS = 1  # generation threads per node
GENERATION_SLOTS = 0  # generations at once on this host, all nodes together; 0 = one per N_THREADS cores
# A generation that starts while other slots are free takes them too and runs with their threads, so a lone
# generation uses every core (1.5B here: 1 thread ~6 tokens/s, 2 threads ~12); later ones wait as for any busy slot.
N_THREADS_MAX = 0  # most threads one generation may use that way; 0 = every core; set it to N_THREADS to turn it off
N_CTX = 4096  # context window (tokens); prompts plus code plus test failures fit in 4k for module-sized tasks
MAX_TOKENS = 1024  # cap on one generation; a module of four functions with tests is ~500-800 tokens
TEMPERATURE = 0.2  # low but not greedy, so a retry can take another path

# --- solver ----------------------------------------------------------------------------------------
MAX_RETRIES = 3  # extra attempts after generated code fails its tests (a whole task's: new drafts, see below)
# Voting: a leaf's first attempt is DRAFTS programs (a whole task: the task asked plainly, as one call to the model
# would be, the first at TEMPERATURE, the rest hotter; a part: one sees the tests, the others only the contract). A
# check every draft fails with the same value is dropped as a wrong test. The drafts then vote on behaviour: the
# tests run as probes that record what each program gives, and the program the drafts agree with most is the best:
# its one failing function is retried (a whole task's retries are otherwise new drafts), and it is the result if
# nothing passes (or a mosaic of each function from the program agreed with most on it, if that passes more).
# A whole task's drafts are generated together (one decode step feeds all: ~1.6x the tokens/s of one on 2 cores),
# and so are its retries' new drafts (the first retry to need one writes one for each retry left).
DRAFTS = 3  # 1 = one first attempt, no voting; each extra draft costs one more LLM call per leaf
# 1.5B Q4_K_M makes ~12.6 tokens/s alone here, but six nodes share two cores (~2-4 tokens/s each while all
# generate), and a leaf may take 4 attempts of ~500 tokens plus sandbox runs: 60 s would cut off real work.
TASK_TIMEOUT = 900  # seconds a (sub)task may take on a peer before it is re-sent elsewhere or solved locally
SUBMIT_TIMEOUT = 3600  # seconds a whole submitted task may take before the client gives up
MAX_DEPTH = 2  # deepest decomposition level; at this depth a node always solves directly
MAX_SUBTASKS = 4  # most parts one decomposition may have
MAX_LLM_CALLS = 60  # LLM calls one submitted task may spend across its whole tree

# --- sandbox (every run of generated code) ----------------------------------------------------------
SANDBOX_IMAGE = "rcp-sandbox:py3"  # built offline by `python -m rcp.sandbox build-image`
SANDBOX_TIMEOUT = 60  # wall-clock seconds per run; the container is killed after this
SANDBOX_MEMORY_MB = 256  # memory limit, with no extra swap; pytest on a module needs ~40 MB
SANDBOX_CPUS = 1.0  # CPU limit per container
SANDBOX_PIDS = 64  # process limit per container (stops fork bombs)
SANDBOX_TMPFS_MB = 64  # size of the writable work dir /work (the only writable place besides a small /tmp)
SANDBOX_FILE_SIZE_MB = 16  # largest single file a sandboxed process may write
SANDBOX_OUTPUT_KB = 64  # stdout and stderr kept per run and stream; the rest is counted and dropped

# --- logging ---------------------------------------------------------------------------------------
LOG_LEVEL = "INFO"  # DEBUG shows prompts and generated code
