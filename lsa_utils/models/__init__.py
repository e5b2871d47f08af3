"""Stage 3, models: architecture lookups (`arch`), activation hooks (`capture`), batches, and loading a pair.

`arch` is the one place that knows where a supported architecture keeps its layers, norm and head;
`capture` holds only hooks, in context managers that always remove them; `batches` turns task items
into tensors with a response mask; `loading` gives every notebook the same teacher / student pair.
"""
