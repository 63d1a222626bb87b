"""The embedded server (`roomscribe serve`): caption page, WebSocket API, file transcription."""
