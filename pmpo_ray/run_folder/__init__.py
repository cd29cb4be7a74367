"""A run folder, owned here alone: its names and paths (layout), one record per JSON file
(files; evaluation.json's in records), the records reports read (records), writing it
(write), reading it back (read, evaluation_file, fields), and the same records from results in
memory (from_results)."""
