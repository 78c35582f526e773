"""Writing artifacts into models/ through the `contract` package, one module per task it writes
(text_classification, text_generation, sentence_embedding; transformer_decoder writes transformer/'s models as
text-generation artifacts through text_generation); onnx_graph holds the dynamo export and ORT verification they
share, int8 the quantised variant of a classifier's graph."""
