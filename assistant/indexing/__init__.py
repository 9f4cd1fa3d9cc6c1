"""The index store: chunking, the Chroma store, the keyword index and the build that fills them."""
