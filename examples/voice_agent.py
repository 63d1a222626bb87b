"""A minimal LiveKit voice agent that hears the user through roomscribe, a self-hosted
streaming Whisper, instead of a cloud speech-to-text service.

    pip install -e ".[livekit]"
    export LIVEKIT_URL=wss://... LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=...
    python examples/voice_agent.py dev

The LLM and TTS here are LiveKit Inference model strings; any LLM/TTS plugin works in
their place. roomscribe runs its own Silero VAD, so its START/END_OF_SPEECH events
drive turn taking (`turn_detection="stt"`) and no second VAD model is loaded.
"""

from __future__ import annotations

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, JobProcess, cli

from livekit.plugins import roomscribe

MODEL = "base"  # or "tiny.en" for speed, or a CTranslate2 Whisper directory


def prewarm(proc: JobProcess) -> None:
    # Load the model while the process is idle, not when the first user speaks.
    # Every STT(model=MODEL) in this process then shares it.
    roomscribe.shared_engine(MODEL)


server = AgentServer(setup_fnc=prewarm)


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    session = AgentSession(
        stt=roomscribe.STT(model=MODEL, language="en"),
        llm="openai/gpt-4.1-mini",
        tts="cartesia/sonic-3",
        turn_handling={"turn_detection": "stt"},
    )
    await session.start(
        agent=Agent(instructions="You are a friendly voice assistant. Answer in one or two short sentences."),
        room=ctx.room,
    )
    session.generate_reply(instructions="Greet the user and offer your help.")


if __name__ == "__main__":
    cli.run_app(server)
