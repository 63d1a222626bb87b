"""Caption a whole meeting in an emulated LiveKit room at 1x: latency per speaker, CPU.

The 4-minute multi-speaker mix (meetings/mixed/mtg_en_7spk) is split into one track per
speaker (each speaker's turns cut from the mix, silence elsewhere) and played into a
room of the test emulator (tests/emulator) as Opus tracks, all at once, at 1x. The caption
bot runs as `roomscribe start` in its own process, registered over /agent and dispatched
like production. Measured:

- final-caption latency per turn: from the end of the turn in the audio to the moment the
  emulator received the last final caption of that turn (a final belongs to the speaker's
  latest turn that had begun when it arrived), p50/p90 per speaker and over all;
- WER of the captions per speaker against the turns' text (turns without text left out);
- CPU of the bot process (seconds of CPU per second of meeting) and its peak RSS;
- with `--translate ko ...`: each translation's delay after its caption's first final
  reached the room (`bench/translation.py` runs this part for 1 and 4 speakers).

Needs root: WebRTC skips loopback, so the benchmark runs in a private network namespace.

    python bench/room.py [--policy localagreement|alignatt] [--seconds N] [--speakers N] [--translate ko ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

import numpy as np
from common import EVAL, ROOT, ChildProcess, load, machine, save, wer

sys.path.insert(0, str(ROOT / "tests"))
from emulator import netns  # noqa: E402
from roomscribe.stats import percentile  # noqa: E402

MIX = "meetings/mixed/mtg_en_7spk.flac"
TURNS = EVAL / "meetings/mixed/mtg_en_7spk.turns.json"
API_KEY, API_SECRET = "devkey", "roomscribe-bench-secret-0123456789abcdef"
ROOM = "meeting"
FINAL = {"lk.transcription_final": "true"}


def speaker_tracks(mix: np.ndarray, turns: list[dict], seconds: float) -> dict[str, np.ndarray]:
    """One track per speaker: their turns cut from the mix, silence elsewhere."""
    n = min(len(mix), int(seconds * 16000))
    tracks: dict[str, np.ndarray] = {}
    for turn in turns:
        track = tracks.setdefault(turn["speaker"], np.zeros(n, np.float32))
        a, b = int(turn["start"] * 16000), min(n, int(turn["end"] * 16000))
        track[a:b] = mix[a:b]
    return tracks


def turn_latencies(turns: list[dict], finals: list, started_at: float) -> list[tuple[dict, float]]:
    """(turn, seconds from its end to its last final) for every turn that got a final."""
    out = []
    for i, turn in enumerate(turns):
        begin = started_at + turn["start"]
        later = [t for t in turns[i + 1 :] if t["speaker"] == turn["speaker"]]
        until = started_at + later[0]["start"] if later else float("inf")
        mine = [f.done_at for f in finals if begin < f.done_at <= until]
        if mine:
            out.append((turn, max(mine) - (started_at + turn["end"])))
    return out


class BotProcess(ChildProcess):
    """`roomscribe start` against the emulator, and its CPU use."""

    def __init__(self, url: str, policy: str):
        env = dict(
            os.environ,
            LIVEKIT_URL=url,
            LIVEKIT_API_KEY=API_KEY,
            LIVEKIT_API_SECRET=API_SECRET,
            ROOMSCRIBE_HEALTH_PORT="0",
            ROOMSCRIBE_POLICY=policy,
            ROOMSCRIBE_EMPTY_TIMEOUT="5",
        )
        super().__init__(["start"], ROOT / "bench" / "room-bot.log", env=env)  # its rooms run on its threads
        self.peak_rss = 0.0

    def sample(self) -> None:
        self.peak_rss = max(self.peak_rss, self.ps.memory_info().rss / 2**20)


async def run(policy: str, seconds: float, speakers: int | None = None, translate: tuple[str, ...] = ()) -> dict:
    """`speakers`: only the N who say most (by speech time); `translate`: the room's languages."""
    import psutil

    from emulator import Emulator

    turns = [t for t in json.loads(TURNS.read_text()) if t["end"] <= seconds]
    if speakers is not None:
        talk: dict[str, float] = {}
        for t in turns:
            talk[t["speaker"]] = talk.get(t["speaker"], 0.0) + t["end"] - t["start"]
        chosen = sorted(talk, key=talk.get, reverse=True)[:speakers]
        turns = [t for t in turns if t["speaker"] in chosen]
    tracks = speaker_tracks(load(MIX), turns, seconds)
    host = netns.enter_private_network()
    if host is None:
        sys.exit(f"cannot run: {netns.reason}")
    async with Emulator(host, api_key=API_KEY, api_secret=API_SECRET) as emu:
        bot = BotProcess(emu.url, policy)
        try:
            await emu.recorder.wait_for(lambda _: [w for w in emu.workers.values() if w.status == 0], 120)
            await asyncio.sleep(5)  # the idle job thread loads the model and measures capacity
            # Everyone is in the room when the bot joins; each track's audio starts when the bot
            # first pulls it.
            speakers = {name: await emu.add_speaker(ROOM, name, pcm) for name, pcm in tracks.items()}
            metadata = json.dumps({"translate": list(translate)}) if translate else ""
            dispatch = await (await emu.create_dispatch(ROOM, "roomscribe", metadata)).wait(60)
            if dispatch.state != "assigned":
                sys.exit(f"dispatch failed: {dispatch.error}")
            for s in speakers.values():
                await s.wait_started()
            me = psutil.Process()
            cpu0, own0, wall0 = bot.cpu_seconds(), sum(me.cpu_times()[:2]), time.monotonic()
            end = max(s.audio_ends_at for s in speakers.values()) + (20.0 if translate else 5.0)
            while time.monotonic() < end:
                bot.sample()
                await asyncio.sleep(1.0)
            wall = time.monotonic() - wall0
            cpu = (bot.cpu_seconds() - cpu0) / wall
            emulator_cpu = (sum(me.cpu_times()[:2]) - own0) / wall
            max_lag = max(s.source.max_lag for s in speakers.values())
        finally:
            if ROOM in emu.rooms:
                await emu.delete_room(ROOM)  # the bot's job ends, so the worker can drain
            await asyncio.to_thread(bot.stop)
        result = report(emu, speakers, turns, policy, seconds, cpu, bot.peak_rss, max_lag)
        result["emulator_cpu_cores"] = emulator_cpu
        if translate:
            result["translation"] = translation_report(emu, speakers, translate)
        return result


def translation_report(emu, speakers, languages) -> dict:
    """Per language: seconds from a caption's first final reaching the room to its translation
    reaching the room (the first one for that segment), and how many finals got one."""
    out: dict = {}
    for language in languages:
        delays, finals_seen, translated = [], 0, 0
        for name in speakers:
            streams = emu.recorder.streams("lk.transcription", sender_identity=name, **FINAL)
            first_final: dict[str, float] = {}
            first_translation: dict[str, float] = {}
            for f in sorted(streams, key=lambda f: f.done_at):
                if "roomscribe.translation_of" not in f.attributes:
                    if f.text.strip():
                        first_final.setdefault(f.attributes["lk.segment_id"], f.done_at)
                elif f.attributes.get("roomscribe.language") == language:
                    first_translation.setdefault(f.attributes["roomscribe.caption_segment_id"], f.done_at)
            finals_seen += len(first_final)
            for segment, at in first_translation.items():
                if segment in first_final:
                    translated += 1
                    delays.append(at - first_final[segment])
        out[language] = {
            "finals": finals_seen,
            "translated": translated,
            "delay_p50": percentile(delays, 50),
            "delay_p90": percentile(delays, 90),
            "delay_max": max(delays) if delays else None,
        }
    return out


def report(emu, speakers, turns, policy, seconds, cpu, peak_rss, max_lag) -> dict:
    per_speaker, everyone, refs, hyps = {}, [], [], []
    for name, spk in speakers.items():
        finals = [
            f
            for f in emu.recorder.streams("lk.transcription", sender_identity=name, **FINAL)
            if "roomscribe.translation_of" not in f.attributes  # translations are not captions
        ]
        mine = [t for t in turns if t["speaker"] == name]
        # Per segment: its first final is when the caption was shown (a later one is a second
        # hearing replacing it, as a frontend does: the last one is what it ends up showing).
        first: dict[str, object] = {}
        shown: dict[str, str] = {}
        for f in sorted(finals, key=lambda f: f.done_at):
            first.setdefault(f.attributes["lk.segment_id"], f)
            shown[f.attributes["lk.segment_id"]] = f.text
        lat = [v for _, v in turn_latencies(mine, list(first.values()), spk.audio_started_at)]
        everyone += lat
        said = " ".join(t["text"] for t in mine if t["text"])
        heard = " ".join(shown.values())
        row = {
            "turns": len(mine),
            "turns_with_final": len(lat),
            "finals": len(finals),
            "latency_p50": percentile(lat, 50),
            "latency_p90": percentile(lat, 90),
        }
        row["captions"] = heard
        if said:
            row["wer"] = wer([said], [heard])
            refs.append(said)
            hyps.append(heard)
        per_speaker[name] = row
    return {
        "machine": machine(),
        "model": os.environ.get("ROOMSCRIBE_MODEL", "base"),
        "policy": policy,
        "audio": MIX,
        "seconds": seconds,
        "speakers": len(speakers),
        "latency_p50": percentile(everyone, 50),
        "latency_p90": percentile(everyone, 90),
        "turns_measured": len(everyone),
        "turns": len(turns),
        "wer": wer(refs, hyps),
        "bot_cpu_cores": cpu,
        "bot_peak_rss_mb": peak_rss,
        "emulator_max_frame_lag_s": max_lag,
        "per_speaker": per_speaker,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="localagreement", choices=["localagreement", "alignatt"])
    parser.add_argument("--seconds", type=float, default=1e9, help="play only the first N seconds")
    parser.add_argument("--speakers", type=int, default=None, help="only the N speakers who say most")
    parser.add_argument("--translate", nargs="*", default=[], help="the room's translation languages")
    args = parser.parse_args()
    result = asyncio.run(run(args.policy, args.seconds, args.speakers, tuple(args.translate)))
    path = save(f"room-{args.policy}", result)
    print(json.dumps({k: v for k, v in result.items() if k != "per_speaker"}, indent=2))
    for name, row in result["per_speaker"].items():
        print(
            f"{name:16s} "
            + " ".join(
                f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items() if k != "captions"
            )
        )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
