"""Reading files: loaders for text, HTML, PDF and feeds, and the cleaning they share."""
