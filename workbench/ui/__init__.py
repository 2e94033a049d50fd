"""Layer 4, what a person looks at: plotly figures, the layer-explorer widgets and the Voila server that serves them.
Imports from every layer below; only the CLI sits above it."""
