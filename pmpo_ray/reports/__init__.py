"""`pmpo report`: a run folder read into plain records, rendered as Markdown and HTML with PNGs."""
