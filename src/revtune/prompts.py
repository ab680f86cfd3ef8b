"""Model inputs built from a revision: the instruction prompts of METHODS.md, the plain pair, or the
word-level edit (``diff``)."""
from __future__ import annotations

import difflib
import re

from .corpora.record import Revision

PROMPT_STYLES = ("diff", "instruction", "pair", "reference-instruction", "reference-pair")
TOKEN = re.compile(r"(\s*)(\w+|[^\w\s])")
GAP = " …"

ITERATER_LABELS = ("clarity", "fluency", "coherence", "style", "meaning-changed")
ARGREVISION_LABELS = ("relevant", "irrelevant", "already exists", "LCE", "not LCE", "commentary")
ARGREVISION_SPELLED = {"LCE": "linked claim evidence", "not LCE": "not linked claim evidence"}


def corpus_family(labels: list[str]) -> str:
    if set(labels) <= set(ITERATER_LABELS):
        return "iterater"
    if set(labels) <= set(ARGREVISION_LABELS):
        return "argrevision"
    return "generic"


def _tokens(text: str) -> list[tuple[str, str]]:
    """(leading whitespace, word or punctuation mark) pairs, so that unchanged runs render as written."""
    return TOKEN.findall(text)


def word_alignment(before: str, after: str):
    """Both texts as (whitespace, token) pairs and difflib's opcodes aligning their tokens: the one
    word-level diff of the ``diff`` prompt and the TF-IDF floor."""
    old, new = _tokens(before), _tokens(after)
    matcher = difflib.SequenceMatcher(None, [t for _, t in old], [t for _, t in new], autojunk=False)
    return old, new, matcher.get_opcodes()


def _join(tokens: list[tuple[str, str]], lead: bool = True) -> str:
    text = "".join(space + token for space, token in tokens)
    return text if lead else text.lstrip()


def _equal_run(tokens: list[tuple[str, str]], context: int, first: bool, last: bool) -> str:
    """An unchanged run, cut to ``context`` tokens after the previous edit and before the next one."""
    head, tail = (0 if first else context), (0 if last else context)
    if context < 0 or (first and last) or len(tokens) <= head + tail:
        return _join(tokens)
    return _join(tokens[:head]) + GAP + (_join(tokens[len(tokens) - tail:]) if tail else "")


def diff_text(before: str, after: str, context: int = -1) -> str:
    """The revision as one text: unchanged words as written, ``[-deleted-]`` and ``{+inserted+}`` (wdiff's
    marks) where they differ, on difflib's alignment of word and punctuation tokens.

    With ``context >= 0`` an unchanged run keeps only ``context`` tokens beside each edit and the rest
    becomes " …": the edits of a long document fit in a short ``max_length``.
    """
    old, new, codes = word_alignment(before, after)
    parts = []
    for n, (op, i1, i2, j1, j2) in enumerate(codes):
        if op == "equal":
            parts.append(_equal_run(old[i1:i2], context, first=n == 0, last=n == len(codes) - 1))
            continue
        space = (old[i1:i2] or new[j1:j2])[0][0][:1]
        if op in ("delete", "replace"):
            parts.append(f"{space}[-{_join(old[i1:i2], lead=False)}-]")
        if op in ("insert", "replace"):
            parts.append(f"{'' if op == 'replace' else space}{{+{_join(new[j1:j2], lead=False)}+}}")
    return "".join(parts).strip()


# The authors' prompts, character for character (leading newline, 8-space indents, the space before the
# first line break, trailing indent): the reference preset's ``reference-instruction``.
REFERENCE_PROMPTS = {
    "iterater": ("\n        ### Instruction: Identify the intention of the revision between original sentence and "
                 "revised sentence. \n        The possible intentions include: Clarity, Style, Fluency, Coherence, "
                 "and Meaning-change.\n\n        ### Original Sentence: {before}\n        ### Revised Sentence: "
                 "{after}\n        "),
    "argrevision": ("\n        ### Instruction: Identify the intention of the revision between original text and "
                    "revised text. \n        The possible intentions include: relevant, irrelevant, already exists, "
                    "linked claim evidence, not linked claim evidence, commentary\n\n        ### Original Text: "
                    "{before}\n        ### Revised Text: {after}\n        "),
}


def intent_prompt(revision: Revision, labels: list[str], style: str = "instruction",
                  context: int = -1) -> str | tuple[str, str]:
    """The model input of one revision: text, or a (first, second) pair the tokenizer encodes as a text
    pair (``reference-pair``, as the reference). Each corpus gets its own prompt on every split (the
    reference code reused IteraTeR's for ArgRevision at test time; we do not). ``diff`` is
    :func:`diff_text` of the two texts (``context`` tokens kept beside each edit) with no instruction: the
    model reads what changed instead of finding it, in a few tokens, so a short ``max_length`` holds the
    edit and steps are cheap."""
    if style == "pair":
        return f"{revision.before}\n{revision.after}"
    if style == "reference-pair":
        return revision.before, revision.after
    if style == "reference-instruction":
        family = corpus_family(labels)
        template = REFERENCE_PROMPTS["argrevision" if family == "argrevision" else "iterater"]
        return template.format(before=revision.before, after=revision.after)
    if style == "diff":
        edit = f"Edit: {diff_text(revision.before, revision.after, context)}\nIntent:"
        return f"Context: {revision.context}\n{edit}" if revision.context else edit
    family = corpus_family(labels)
    unit = "sentence" if family == "iterater" else "text"
    if family == "iterater":
        names = "Clarity, Style, Fluency, Coherence and Meaning-change"
    else:
        spelled = [ARGREVISION_SPELLED.get(label, label) for label in labels]
        names = ", ".join(spelled[:-1]) + f" and {spelled[-1]}" if len(spelled) > 1 else spelled[0]
    lines = [
        "### Instruction:",
        f"Identify the intention of the revision between the original {unit} and the revised {unit}.",
        f"The possible intentions are: {names}.",
        "",
        f"### Original {unit.capitalize()}: {revision.before}",
        f"### Revised {unit.capitalize()}: {revision.after}",
    ]
    if revision.context:
        lines.insert(4, f"### Context: {revision.context}")
    return "\n".join(lines)


def revise_prompt(before: str, intents) -> str:
    """Instruction for revision generation; the response follows 'Revised Text:'."""
    joined = ", ".join(intents)
    noun = "intention" if len(intents) == 1 else "intentions"
    return ("### Instruction:\n"
            f"Revise the original text for the {noun}: {joined}.\n\n"
            f"### Original Text: {before}\n"
            "### Revised Text:")


def tokenize_inputs(tokenizer, inputs: list, **kwargs):
    """Tokenize texts, or (first, second) pairs as tokenizer text pairs, with the same arguments."""
    if inputs and isinstance(inputs[0], tuple):
        return tokenizer([a for a, _ in inputs], [b for _, b in inputs], **kwargs)
    return tokenizer(inputs, **kwargs)
