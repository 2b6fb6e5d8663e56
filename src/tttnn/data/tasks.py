"""Task names and weights, and shard names: constants the workflow needs at parse time (no heavy imports)."""

from __future__ import annotations

# The Pile's sampling weights (epochs x size share, in percent), by task slug.
PILE_WEIGHTS: dict[str, float] = {
    "pile-cc": 18.11,
    "pubmed-central": 14.40,
    "books3": 12.07,
    "owt2": 10.01,
    "arxiv": 8.96,
    "github": 7.59,
    "freelaw": 6.12,
    "stackexchange": 5.13,
    "uspto": 3.65,
    "pubmed-abstracts": 3.07,
    "gutenberg": 2.17,
    "opensubtitles": 1.55,
    "wikipedia": 1.53,
    "dm-math": 1.24,
    "ubuntu-irc": 0.88,
    "bookcorpus2": 0.75,
    "europarl": 0.73,
    "hackernews": 0.62,
    "youtubesubs": 0.60,
    "philpapers": 0.38,
    "nih": 0.30,
    "enron": 0.14,
}

PILE_SET_SLUGS: dict[str, str] = {
    "Pile-CC": "pile-cc",
    "PubMed Central": "pubmed-central",
    "Books3": "books3",
    "OpenWebText2": "owt2",
    "ArXiv": "arxiv",
    "Github": "github",
    "FreeLaw": "freelaw",
    "StackExchange": "stackexchange",
    "USPTO Backgrounds": "uspto",
    "PubMed Abstracts": "pubmed-abstracts",
    "Gutenberg (PG-19)": "gutenberg",
    "OpenSubtitles": "opensubtitles",
    "Wikipedia (en)": "wikipedia",
    "DM Mathematics": "dm-math",
    "Ubuntu IRC": "ubuntu-irc",
    "BookCorpus2": "bookcorpus2",
    "EuroParl": "europarl",
    "HackerNews": "hackernews",
    "YoutubeSubtitles": "youtubesubs",
    "PhilPapers": "philpapers",
    "NIH ExPorter": "nih",
    "Enron Emails": "enron",
}
PILE_TASKS = sorted(PILE_SET_SLUGS.values())

MINIPILE_TASKS = ["github", "dm-math", "freelaw", "stackexchange"]


def shard_names(n_shards: int) -> list[str]:
    """Names of the index shards: ``000``, ``001``, ..."""
    return [f"{i:03d}" for i in range(n_shards)]
