"""Controlled vocabularies shared by the manifest, the XMP packet and the verify report.

Keeping them in one table is what lets `verify` notice when XMP and C2PA disagree.
"""

from __future__ import annotations

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"

# --source value -> (IPTC digital source type term, plain words for reports)
SOURCE_TYPES: dict[str, tuple[str, str]] = {
    "ai": ("trainedAlgorithmicMedia", "AI-generated"),
    "ai-composite": (
        "compositeWithTrainedAlgorithmicMedia",
        "composite including AI-generated elements",
    ),
    "ai-edited": ("algorithmicallyEnhanced", "algorithmically enhanced"),
    "digital-art": ("digitalCreation", "digital art made by a person"),
    "photo": ("digitalCapture", "photograph (digital capture)"),
    "film-scan": ("negativeFilm", "scanned film negative"),
    "composite": ("composite", "composite of several sources"),
    "screenshot": ("screenCapture", "screen capture"),
    "algorithmic": ("algorithmicMedia", "made by an algorithm without training data"),
    "virtual-recording": ("virtualRecording", "recording of a virtual event"),
}

_TERM_WORDS = {term: words for term, words in SOURCE_TYPES.values()}


def source_uri(source: str) -> str:
    """Accept a --source key, a bare IPTC term or a full IPTC URI."""
    if source in SOURCE_TYPES:
        return IPTC + SOURCE_TYPES[source][0]
    if source.startswith("http"):
        return source
    if source in _TERM_WORDS:
        return IPTC + source
    raise ValueError(
        f"unknown source type '{source}'; use one of {', '.join(SOURCE_TYPES)} or an IPTC URI"
    )


def source_words(uri: str | None) -> str | None:
    if not uri:
        return None
    term = uri.rstrip("/").rsplit("/", 1)[-1]
    return _TERM_WORDS.get(term, term)


# CAWG training-and-data-mining entries; every one is written so no consumer sees a gap.
TRAINING_ENTRIES = (
    "cawg.ai_generative_training",
    "cawg.ai_inference",
    "cawg.ai_training",
    "cawg.data_mining",
)
TRAINING_VALUES = ("allowed", "notAllowed", "constrained")

# PLUS Data Mining vocabulary (http://ns.useplus.org/ldf/vocab/): the CAWG choice guard writes as
# each term. "constrained" is IPTC's "Prohibited, see plus:OtherConstraints".
PLUS = "http://ns.useplus.org/ldf/vocab/"
PLUS_DATA_MINING = {
    "allowed": PLUS + "DMI-ALLOWED",
    "notAllowed": PLUS + "DMI-PROHIBITED-AIMLTRAINING",
    "constrained": PLUS + "DMI-PROHIBITED-SEECONSTRAINT",
}
# Every term IPTC publishes, with the label IPTC tells tools to write when they write text
# rather than the URI (ExifTool's PLUS table spells them the same). None: no prohibition.
PLUS_TERMS: dict[str, tuple[str, str | None]] = {
    "DMI-UNSPECIFIED": ("Unspecified - no prohibition defined", None),
    "DMI-ALLOWED": ("Allowed", "allowed"),
    "DMI-PROHIBITED-AIMLTRAINING": ("Prohibited for AI/ML training", "notAllowed"),
    "DMI-PROHIBITED-GENAIMLTRAINING": ("Prohibited for Generative AI/ML training", "notAllowed"),
    "DMI-PROHIBITED-EXCEPTSEARCHENGINEINDEXING": (
        "Prohibited except for search engine indexing",
        "notAllowed",
    ),
    "DMI-PROHIBITED": ("Prohibited", "notAllowed"),
    "DMI-PROHIBITED-SEECONSTRAINT": ("Prohibited, see plus:OtherConstraints", "constrained"),
    "DMI-PROHIBITED-SEEEMBEDDEDRIGHTSEXPR": (
        "Prohibited, see iptcExt:EmbdEncRightsExpr",
        "constrained",
    ),
    "DMI-PROHIBITED-SEELINKEDRIGHTSEXPR": (
        "Prohibited, see iptcExt:LinkedEncRightsExpr",
        "constrained",
    ),
    # written by guard 0.1 for "constrained"; not IPTC terms, still read as they were meant
    "DMI-ALLOWED-WITH-CONSTRAINTS": ("", "constrained"),
    "DMI-PROHIBITED-SEEOTHERS": ("", "constrained"),
}
_PLUS_LABELS = {
    label.lower().replace("\u2013", "-"): term for term, (label, _) in PLUS_TERMS.items() if label
}
UNREADABLE = "unreadable"  # a DataMining value that is none of the terms: fail closed


def plus_to_training(value: str | None) -> str | None:
    """allowed / notAllowed / constrained for a DataMining value written as IPTC's URI, its bare
    term or its text label; None when absent or unspecified; UNREADABLE for anything else."""
    text = (value or "").strip()
    if not text:
        return None
    term = text.removeprefix(PLUS) if text.startswith(PLUS) else text
    if term not in PLUS_TERMS:
        term = _PLUS_LABELS.get(text.lower().replace("\u2013", "-"), "")
    return PLUS_TERMS[term][1] if term in PLUS_TERMS else UNREADABLE


TRAINING_WORDS = {
    "allowed": "AI training allowed",
    "notAllowed": "AI training not allowed",
    "constrained": "AI training allowed only under constraints",
}

# C2PA validation status codes -> what they mean to a person.
FAILURE_WORDS: dict[str, str] = {
    "assertion.dataHash.mismatch": "pixels or bytes changed after signing",
    "assertion.boxesHash.mismatch": "pixels or bytes changed after signing",
    "assertion.bmffHash.mismatch": "pixels or bytes changed after signing",
    "assertion.hashedURI.mismatch": "a statement in the manifest was altered after signing",
    "assertion.missing": "a statement the manifest refers to is missing",
    "assertion.cbor.invalid": "a statement in the manifest is corrupt",
    "assertion.json.invalid": "a statement in the manifest is corrupt",
    "assertion.action.ingredientMismatch": "an action refers to an ingredient that is not there",
    "claim.missing": "the manifest has no claim",
    "claim.malformed": "the manifest's claim is corrupt",
    "claimSignature.mismatch": "the signature does not match the manifest (forged or corrupted)",
    "claimSignature.missing": "the manifest is not signed",
    "claimSignature.outsideValidity": "the signing certificate was not valid at signing time",
    "signingCredential.untrusted": "the signer's certificate does not chain to a trusted CA",
    "signingCredential.invalid": "the signer's certificate is not usable for signing",
    "signingCredential.revoked": "the signer's certificate was revoked",
    "signingCredential.expired": "the signer's certificate has expired",
    "timeStamp.mismatch": "the trusted timestamp does not match the signature",
    "timeStamp.untrusted": "the timestamp authority is not trusted",
    "timeStamp.outsideValidity": "the timestamp is outside the certificate's validity",
    "manifest.inaccessible": "the manifest could not be read",
    "manifest.multipleParents": "the manifest claims more than one parent",
    "ingredient.hashedURI.mismatch": "an ingredient's record was altered",
    "ingredient.manifest.missing": "an ingredient's manifest is missing",
    "ingredient.claimSignature.mismatch": "an ingredient's signature does not match",
    "general.error": "the manifest could not be validated",
    "algorithm.unsupported": "the manifest uses an algorithm this verifier does not support",
    # guard's own codes, where the SDK gives an error rather than a status
    "guard.manifest.damaged": "Content Credentials are present but damaged: they cannot be read",
    "guard.manifest.misplaced": (
        "Content Credentials are in the file but not where its format keeps them (the file's "
        "structure was changed)"
    ),
    "guard.manifest.unknownAlgorithm": (
        "Content Credentials are present but signed with an algorithm guard cannot check"
    ),
    "guard.manifest.prerelease": (
        "Content Credentials are present but were made by a pre-release version of the standard: "
        "guard cannot check them"
    ),
    "guard.assertion.shape": "a statement in the manifest has a shape guard cannot read",
}


def failure_words(code: str) -> str:
    return FAILURE_WORDS.get(code, code.replace(".", " "))
