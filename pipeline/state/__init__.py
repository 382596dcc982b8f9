"""What the job keeps between runs, in its data dir: files and the state database.

    store     where everything lives in the data dir, atomic writes
    database  state.sqlite, opened sound (a damaged one set aside) or a DataDirError saying why not
    journal   the load journal (one row per run and log), and which source wrote each log's label
    history   the runs (status, counts, interruptions) and the nightly watermarks
    recover   the run history rebuilt from the run folders, after a damaged state.sqlite
    lock      one run at a time per job and gateway

Everything that persists goes through these modules, so moving the data dir to object storage or
the state to a shared database stays a change in this package.
"""
