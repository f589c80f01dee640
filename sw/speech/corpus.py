"""A speech corpus with phone labels: synthesised with espeak-ng, or a user's own.

No licensed corpus (TIMIT) is available to the project, so :func:`build_corpus` makes one:
sentences from a small grammar over a few hundred common English words, spoken by espeak-ng
across its English voices and voice variants, speeds and pitches, with noise mixed in at
several signal-to-noise ratios. The phone labels are espeak-ng's own phonemes for the same
voice and text (``espeak-ng -x``, stress marks dropped). The splits keep test (and dev)
voices and sentences out of training: each split has its own voice variants and its own
sentences.

The layout on disk, which a user's own corpus (TIMIT converted, say) may follow too::

    CORPUS/train/NAME.wav   mono audio, any sample rate (resampled to 16 kHz on reading)
    CORPUS/train/NAME.phn   the phone transcript: phones separated by spaces, one line
    CORPUS/dev/...          the same for the development set
    CORPUS/test/...         and for the test set

The phone set is every phone of the training transcripts (:func:`phone_set`).
"""

import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..contract.errors import InputError, ToolchainError

__all__ = ["build_corpus", "read_corpus", "phone_set", "Utterance", "SPLITS", "SAMPLE_RATE",
           "require_espeak", "sentences"]

SPLITS = ("train", "dev", "test")
#: Sample rate of the features (espeak-ng speaks at 22,050 Hz; the audio is resampled).
SAMPLE_RATE = 16000

#: English voices of espeak-ng (its accents), and voice variants (speakers) by split.
VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
          "en-gb-x-gbcwmd", "en-029")
VARIANTS = {
    "train": ("m1", "m2", "m3", "m4", "m7", "f1", "f2", "f5", "klatt", "klatt4", "Andy",
              "Annie", "Michael", "Storm", "Tweaky", "max"),
    "dev": ("m5", "f3", "klatt3", "Lee"),
    "test": ("m6", "f4", "klatt2", "Alicia", "john"),
}
SPEEDS = (130, 150, 170, 190, 210)           # words per minute
PITCHES = (30, 40, 50, 60, 70)                # espeak-ng's 0-99 pitch scale
SNRS_DB = (None, 30.0, 20.0, 15.0, 10.0)     # None: clean

_SUBJECTS = """man woman child teacher doctor farmer driver painter sailor singer student
farmer's_wife old_king young_queen small_dog black_cat brown_horse tall_girl quiet_boy
neighbour captain baker soldier writer nurse pilot guard miner""".split()
_NOUNS = """apple river garden window table letter paper basket kitchen mountain bridge
village market station island forest ocean castle harbour meadow candle mirror blanket
bottle pencil ladder hammer jacket pocket button ribbon feather pebble shadow thunder
lantern wagon carpet pillow orange lemon cherry carrot potato tomato sandwich biscuit
coffee butter cheese honey sugar pepper salad dinner breakfast morning evening winter
summer autumn spring weather picture story music lesson number question answer message
doorway hallway chimney fountain statue tower valley desert canyon meadow field road
""".split()
_ADJECTIVES = """big small old young red green blue yellow bright dark quiet loud heavy
light warm cold soft hard smooth rough clean dirty happy sad quick slow tall short long
narrow wide empty full sweet bitter fresh strange gentle brave clever careful lazy busy
""".split()
_VERBS = """found carried painted opened closed watched followed bought sold cleaned
dropped pushed pulled lifted washed fixed moved counted measured wrapped covered
reached touched visited needed wanted noticed described remembered forgot borrowed
""".split()
_PLACES = ("near the", "by the", "under the", "behind the", "beside the", "inside the",
           "across the", "around the")
_ADVERBS = """slowly quickly quietly carefully gladly nearly often never always sometimes
today yesterday again early later""".split()
_TEMPLATES = (
    "the {s} {v} the {a} {n}",
    "the {s} {v} a {n} {p} {n2}",
    "{adv} the {a} {s} {v} the {n}",
    "did the {s} see the {a} {n} {p} {n2}",
    "a {a} {n} is {p} the {a2} {n2}",
    "the {s} and the {s2} {v} {adv}",
    "where is the {a} {n} that the {s} {v}",
    "please put the {n} {p} {n2} before {t}",
    "the {a} {s} will bring the {n} {adv}",
    "we {v} {num} {a} {n}s {p} {n2}",
)
_NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve")
_TIMES = ("noon", "midnight", "dinner", "the morning", "the evening", "the storm")


def sentences(count, seed):
    """``count`` distinct sentences from the grammar, reproducibly from ``seed``."""
    rng = random.Random(seed)
    seen, result = set(), []
    attempts = 0
    while len(result) < count:
        attempts += 1
        if attempts > 50 * count + 1000:
            raise InputError(f"the sentence grammar gave only {len(result)} distinct sentences "
                             f"of the {count} asked for")
        words = {
            "s": rng.choice(_SUBJECTS), "s2": rng.choice(_SUBJECTS), "v": rng.choice(_VERBS),
            "a": rng.choice(_ADJECTIVES), "a2": rng.choice(_ADJECTIVES),
            "n": rng.choice(_NOUNS), "n2": rng.choice(_NOUNS), "p": rng.choice(_PLACES),
            "adv": rng.choice(_ADVERBS), "num": rng.choice(_NUMBERS), "t": rng.choice(_TIMES),
        }
        text = rng.choice(_TEMPLATES).format(**words).replace("_", " ")
        text = text.replace("the the", "the")
        if text not in seen:
            seen.add(text)
            result.append(text)
    return result


def require_espeak():
    """The path of espeak-ng, or ToolchainError saying how to install it."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise ToolchainError(
            "espeak-ng is not installed; it synthesises the speech corpus. Install it with "
            "`sudo apt-get install espeak-ng` (Debian/Ubuntu; `make corpus` does it), or "
            "bring your own corpus in the layout of `ese corpus --help`")
    return path


def _espeak(arguments):
    try:
        done = subprocess.run([require_espeak(), *arguments], capture_output=True, check=True,
                              timeout=60)
    except subprocess.CalledProcessError as error:
        raise ToolchainError(f"espeak-ng failed ({' '.join(arguments)}): "
                             f"{error.stderr.decode(errors='replace').strip()}") from None
    return done.stdout


def espeak_phones(text, voice):
    """espeak-ng's phonemes for ``text`` in ``voice``, stress marks dropped."""
    raw = _espeak(["-q", "-x", "--sep= ", "-v", voice, text]).decode()
    phones = []
    for token in raw.split():
        token = token.strip("',%=_|;")
        # Variants of one phoneme carry a digit (@2, a#); the base phoneme is the label.
        token = token.rstrip("0123456789#") if len(token) > 1 else token
        if token.strip(":"):               # a lone ':' or '::' is a pause, not a phone
            phones.append(token)
    return phones


def synthesise(text, voice, variant, speed, pitch):
    """Speak ``text``; returns (audio float32 at SAMPLE_RATE, phones)."""
    import io

    import soundfile
    from librosa import resample
    wav = _espeak(["-v", f"{voice}+{variant}", "-s", str(speed), "-p", str(pitch), "--stdout",
                   text])
    audio, rate = soundfile.read(io.BytesIO(_fix_stream_header(wav)), dtype="float32")
    audio = resample(audio, orig_sr=rate, target_sr=SAMPLE_RATE)
    return audio.astype(np.float32), espeak_phones(text, voice)


def _fix_stream_header(wav):
    """espeak-ng writes a WAV to a pipe with unknown (0x7fffffff) sizes; set the real ones."""
    data = bytearray(wav)
    if data[:4] == b"RIFF" and data[36:40] == b"data":
        data[4:8] = (len(data) - 8).to_bytes(4, "little")
        data[40:44] = (len(data) - 44).to_bytes(4, "little")
    return bytes(data)


def add_noise(audio, snr_db, rng):
    """``audio`` with white noise at ``snr_db`` (None: unchanged)."""
    if snr_db is None:
        return audio
    power = float(np.mean(audio ** 2)) or 1e-12
    noise = rng.normal(scale=np.sqrt(power / 10 ** (snr_db / 10)), size=audio.shape)
    return (audio + noise).astype(np.float32)


def build_corpus(directory, utterances=2000, seed=0, log=None):
    """Synthesise a corpus of ``utterances`` utterances (80% train, 10% dev, 10% test).

    Every utterance draws a voice, a variant of its split, a speed, a pitch and a noise level;
    each split speaks its own sentences. Returns ``{split: count}``.
    """
    import soundfile
    if utterances < 10:
        raise InputError(f"a corpus needs at least 10 utterances (one per dev and test "
                         f"split at least), not {utterances}")
    require_espeak()
    directory = Path(directory)
    counts = {"train": utterances - 2 * (utterances // 10), "dev": utterances // 10,
              "test": utterances // 10}
    texts = sentences(sum(counts.values()), seed)
    rng = np.random.default_rng(seed)
    picks = random.Random(seed + 1)
    start = 0
    for split in SPLITS:
        folder = directory / split
        folder.mkdir(parents=True, exist_ok=True)
        for index, text in enumerate(texts[start:start + counts[split]]):
            voice = picks.choice(VOICES)
            variant = picks.choice(VARIANTS[split])
            audio, phones = synthesise(text, voice, variant, picks.choice(SPEEDS),
                                       picks.choice(PITCHES))
            audio = add_noise(audio, picks.choice(SNRS_DB), rng)
            name = f"{split}_{index:05d}"
            soundfile.write(folder / f"{name}.wav", audio, SAMPLE_RATE, subtype="PCM_16")
            (folder / f"{name}.phn").write_text(" ".join(phones) + "\n")
            (folder / f"{name}.txt").write_text(f"{text}\n{voice}+{variant}\n")
            if log is not None and index % 100 == 0:
                log(f"{split}: {index} of {counts[split]} utterances")
        start += counts[split]
    return counts


@dataclass
class Utterance:
    name: str
    audio_path: Path
    phones: list


def read_corpus(directory, split):
    """The utterances of one split of a corpus in the documented layout."""
    folder = Path(directory) / split
    if not folder.is_dir():
        raise InputError(f"{folder} does not exist; a corpus has train/, dev/ and test/ "
                         f"folders of NAME.wav and NAME.phn files (build one with "
                         f"`ese corpus DIR`)")
    utterances = []
    for wav in sorted(folder.glob("*.wav")):
        phn = wav.with_suffix(".phn")
        if not phn.is_file():
            raise InputError(f"{wav} has no phone transcript {phn.name} beside it")
        phones = phn.read_text().split()
        if not phones:
            raise InputError(f"{phn} holds no phones")
        utterances.append(Utterance(wav.stem, wav, phones))
    if not utterances:
        raise InputError(f"{folder} holds no NAME.wav files")
    return utterances


def phone_set(utterances):
    """The sorted phones of ``utterances`` (the model's output classes, after the blank)."""
    return sorted({phone for u in utterances for phone in u.phones})
