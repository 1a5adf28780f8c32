"""Student code in a worker process of its own (grader runs only).

- `client.py`: the test process's side: `RemoteSubmission`, what the `student` fixture is when sandboxed;
- `process.py`: the zygote and worker handles: unprivileged user, rlimits, a folder (chroot) of its own;
- `zygote.py`: the process workers are forked from (imports torch once; runs in the jail);
- `launch.py`: the grading run's test process, started so that its zygote shares its imports;
- `protocol.py`: the wire format both sides speak (JSON + raw tensor bytes, never pickle), and the
  typed schema of every request and answer;
- `common.py`: what both sides do alike: hook replay, the backward bridge, module-tree encoding
  (imports only `protocol`);
- `server.py`: the worker's side (`RequestServer`): imports the student's files and answers
  requests. Imports only `protocol`, `common` and `autograder.kit`.
"""
