"""The model stand-in's answers to LightRAG's prompts (lightrag-hku 1.4.13, Yuxi-Know v0.6.1's pin).

LightRAG asks its LLM for four things while it ingests and queries; each prompt is
recognised by markers of its template (``lightrag/prompt.py``) and answered the way
its parser (``lightrag/operate.py``) reads it:

- **entity extraction** (system prompt "Knowledge Graph Specialist responsible for
  extracting entities", the chunk between ``<Input Text>`` fences in the user prompt):
  one record a line, fields joined by the tuple delimiter ``<|#|>``:
  ``entity<|#|>NAME<|#|>TYPE<|#|>DESCRIPTION`` and
  ``relation<|#|>SOURCE<|#|>TARGET<|#|>KEYWORDS<|#|>DESCRIPTION``, then ``<|COMPLETE|>``.
  Entities are the capitalised words and phrases of the chunk (leading function words
  dropped), relations join entities named in one sentence (or, if no sentence names
  two, each entity with the next);
- **gleaning** ("Based on the last extraction task"): nothing was missed, only ``<|COMPLETE|>``;
- **description summaries** ("synthesize a list of descriptions"): the distinct
  descriptions of the JSON lines, joined;
- **query keywords** ("---Real Data---" / "User Query:", sent with a JSON-schema
  ``response_format``): ``{"high_level_keywords": [...], "low_level_keywords": [...]}``,
  low level = the query's capitalised phrases (so a query naming an entity finds it
  through the entity vectors), high level = its other content words.

Deterministic: the same chunk always gives the same records, in every replica.
"""

from __future__ import annotations

import itertools
import json
import re

TUPLE_DELIMITER = "<|#|>"
COMPLETION_DELIMITER = "<|COMPLETE|>"
ENTITY_TYPE = "other"  # LightRAG's fallback type; the parser lower-cases types anyway
MAX_ENTITIES = 24
MAX_RELATIONS = 24
MAX_SENTENCE = 160

EXTRACTION_MARKER = "responsible for extracting entities and relationships"
GLEANING_MARKER = "Based on the last extraction task"
SUMMARY_MARKER = "synthesize a list of descriptions"
KEYWORDS_MARKER = "---Real Data---"

# Capitalised words that start sentences or name nothing: never entities on their own.
_FUNCTION_WORDS_TEXT = """a an and are as at be but by can could did do does each even every for from had has
    have he her his how i if in into is it its let may might more most my no nor not of on
    once one only or our she should so some such than that the their then there these they
    this those though to too under until up us was we were what when where whether which
    while who whom whose why will with would yet you your also after all any because before about
    both during here however meanwhile note please see since still thus today yes"""
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS_TEXT.split())
_PHRASE = re.compile(r"[A-Z][\w'-]*(?:[ \t]+[A-Z][\w'-]*)*")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# After . ! ? and a space, after a CJK full stop (no space follows those), or at a blank line.
_SENTENCE_END = re.compile("(?<=[.!?])\\s+|(?<=[\u3002\uff01\uff1f])\\s*|\n{2,}")
_USER_QUERY = re.compile(r"User Query:\s*(.*?)\s*(?:\n---Output---|\Z)", re.DOTALL)
_DESCRIPTIONS = re.compile(r"Description List:\s*```\n?(.*?)\n?```", re.DOTALL)


def _clean(value: str) -> str:
    """One field: no delimiters, no line breaks (the parser splits records on newlines)."""
    value = value.replace("<|", " ").replace("|>", " ")
    return re.sub(r"\s+", " ", value).strip()


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def entity_names(text: str) -> list[str]:
    """Capitalised phrases of *text*, leading function words dropped, first appearance order."""
    names: list[str] = []
    for match in _PHRASE.finditer(text):
        words = [w.removesuffix("'s") for w in match.group(0).split()]
        while words and words[0].lower().strip("'") in FUNCTION_WORDS:
            words.pop(0)
        name = " ".join(words).strip("'-")
        if len(name) >= 2 and name not in names:
            names.append(name)
    return names


def _named_in(sentence: str, names: list[str]) -> list[str]:
    """The *names* that occur in *sentence* as whole words; a longer name hides the shorter
    ones inside it ("Analytical Engine" is not also "Engine"). In *names*' order."""
    rest, seen = sentence, set()
    for name in sorted(names, key=len, reverse=True):
        pattern = re.compile(rf"(?<!\w){re.escape(name)}(?!\w)")
        if pattern.search(rest):
            seen.add(name)
            rest = pattern.sub(" ", rest)
    return [n for n in names if n in seen]


def extraction_records(text: str) -> list[str]:
    """The entity and relation lines LightRAG's extraction parser accepts, for chunk *text*."""
    found = entity_names(text)[:MAX_ENTITIES]
    if not found:
        return []
    first_sentence: dict[str, str] = {}
    pairs: list[tuple[str, str, str]] = []
    for sentence in sentences(text):
        named = _named_in(sentence, found)
        for name in named:
            first_sentence.setdefault(name, sentence)
        for i, source in enumerate(named):
            for target in named[i + 1 :]:
                if not any({source, target} == {a, b} for a, b, _ in pairs):
                    pairs.append((source, target, sentence))
    if not pairs:  # no sentence names two of them: a chain keeps the graph connected
        pairs = [(a, b, first_sentence.get(a, text)) for a, b in itertools.pairwise(found)]
    lines = []
    for name in found:
        context = _clean(first_sentence.get(name, text))[:MAX_SENTENCE]
        fields = ["entity", _clean(name), ENTITY_TYPE, f"{_clean(name)} is named in the text: {context}"]
        lines.append(TUPLE_DELIMITER.join(fields))
    for source, target, sentence in pairs[:MAX_RELATIONS]:
        context = _clean(sentence)[:MAX_SENTENCE]
        description = f"{_clean(source)} and {_clean(target)} are named together: {context}"
        fields = ["relation", _clean(source), _clean(target), "co-occurrence", description]
        lines.append(TUPLE_DELIMITER.join(fields))
    return lines


def extraction_answer(user_prompt: str) -> str:
    """The whole answer to an extraction prompt (the chunk is the last ``<Input Text>`` block)."""
    # Fenced by ``` and followed by <Output>; the chunk itself may hold fences (markdown).
    text = user_prompt.rsplit("<Input Text>", 1)[-1].rsplit("<Output>", 1)[0].strip()
    text = text.removeprefix("```").removesuffix("```").strip()
    return "\n".join([*extraction_records(text), COMPLETION_DELIMITER])


def keywords(query: str) -> dict[str, list[str]]:
    """LightRAG's keyword JSON for *query*: both lists non-empty whenever the query has a word."""
    low = entity_names(query)
    in_low = {w.lower() for name in low for w in name.split()}
    high: list[str] = []
    for word in _WORD.findall(query):
        lowered = word.lower()
        if lowered not in FUNCTION_WORDS and lowered not in in_low and lowered not in high:
            high.append(lowered)
    return {
        "high_level_keywords": (high or [n.lower() for n in low])[:8],
        "low_level_keywords": (low or high)[:8],
    }


def keywords_answer(prompt: str) -> str:
    match = _USER_QUERY.search(prompt.rsplit(KEYWORDS_MARKER, 1)[-1])
    query = match.group(1).strip() if match else prompt
    return json.dumps(keywords(query), ensure_ascii=False)


def summary_answer(prompt: str) -> str:
    """The distinct descriptions of a summary prompt's JSON lines, joined by blank lines."""
    block = _DESCRIPTIONS.search(prompt)
    descriptions: list[str] = []
    for line in (block.group(1) if block else "").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        text = str(item.get("Description", "")).strip() if isinstance(item, dict) else ""
        if text and text not in descriptions:
            descriptions.append(text)
    return "\n\n".join(descriptions) or "No description."


def answer(system: str, user: str) -> str | None:
    """The answer to one of LightRAG's prompts, or None when the messages are not one of them."""
    if GLEANING_MARKER in user and EXTRACTION_MARKER in system:
        return COMPLETION_DELIMITER
    if EXTRACTION_MARKER in system and "<Input Text>" in user:
        return extraction_answer(user)
    if SUMMARY_MARKER in user and "Description List:" in user:
        return summary_answer(user)
    if KEYWORDS_MARKER in user and "User Query:" in user:
        return keywords_answer(user)
    return None
