"""`pmpo report`: a run folder (as run_folder/ reads it) rendered as Markdown and HTML with PNGs."""
