"""Model inputs built from a revision: the instruction prompts of METHODS.md, or the plain pair."""
from __future__ import annotations

from .corpora.record import Revision

ITERATER_LABELS = ("clarity", "fluency", "coherence", "style", "meaning-changed")
ARGREVISION_LABELS = ("relevant", "irrelevant", "already exists", "LCE", "not LCE", "commentary")
ARGREVISION_SPELLED = {"LCE": "linked claim evidence", "not LCE": "not linked claim evidence"}


def corpus_family(labels: list[str]) -> str:
    if set(labels) <= set(ITERATER_LABELS):
        return "iterater"
    if set(labels) <= set(ARGREVISION_LABELS):
        return "argrevision"
    return "generic"


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


def intent_prompt(revision: Revision, labels: list[str], style: str = "instruction") -> str | tuple[str, str]:
    """The model input of one revision: text, or a (first, second) pair the tokenizer encodes as a text
    pair (``reference-pair``, as the reference). Each corpus gets its own prompt on every split (the
    reference code reused IteraTeR's for ArgRevision at test time; we do not)."""
    if style == "pair":
        return f"{revision.before}\n{revision.after}"
    if style == "reference-pair":
        return revision.before, revision.after
    if style == "reference-instruction":
        family = corpus_family(labels)
        template = REFERENCE_PROMPTS["argrevision" if family == "argrevision" else "iterater"]
        return template.format(before=revision.before, after=revision.after)
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
