"""The LoRA trainer that runs in a child process: `python -m inhouse.tuning.trainer JOB_DIR`.

`spec` (the job's settings, torch-free) is what the server imports; `loop` (torch,
transformers, peft from the `inhouse[tuning]` extra) runs only in the child.
"""
