"""Running the codec on files: audio I/O, the ``.mlae`` format, chunked compress/decompress, the LiteRT runtime,
export, and ``load_model`` (every kind of model spec -> a codec).

``audio_io``      reading, writing, the one ``resample`` / ``to_mono`` / loudness meter (channels-first arrays)
``codec_file``    the ``.mlae`` byte layout (``MLAEFile.save`` / ``MLAEFile.load``)
``compress``      chunked streaming ``compress`` / ``decompress``, typed against ``protocol.Codec``
``entropy``       entropy priors of a model's codes (fitted, shipped beside the weights) and the range coder of
                  entropy-coded ``.mlae`` payloads (numpy + constriction)
``lite``          :class:`~.lite.LiteCodec`: the codec on LiteRT flatbuffers, no TensorFlow
``export``        SavedModel / TFLite / LiteRT export (needs TensorFlow)
``loading``       ``load_model(spec, engine)``: one resolver per kind of spec

Nothing here imports training, evaluation or the CLI, and importing this package loads no Keras/TensorFlow: the
LiteRT path of ``mlae compress``/``decompress`` stays light.
"""
