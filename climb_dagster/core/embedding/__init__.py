"""Document embeddings: the sentence-transformers encoder (torch, or an int8 ONNX Runtime session on CPUs
without native bf16), batch sizing from a device's memory, and one embedder per GPU of a node.

May import: common, io. Heavy libraries (torch, transformers, onnxruntime) load on first use.
"""
