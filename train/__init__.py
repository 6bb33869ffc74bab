"""Training package for the formreader CRNN (Keras 3; TensorFlow here, JAX on a GPU box).

Only this package imports Keras/TensorFlow; the runtime (`formreader/`) reads the exported ONNX.
"""
