"""Every opt-out vocabulary, read by its own standard's grammar and tested with the standard's own
documented examples; a value that is there but cannot be read is never 'allowed'."""

from __future__ import annotations

import pytest

from guard.provenance import robots_tag, usage_headers, vocab

# ---- X-Robots-Tag: Google's and MDN's documented examples ------------------------------------


@pytest.mark.parametrize(
    ("value", "agent", "expected"),
    [
        # the examples on Google's robots meta tag page and MDN, none of which opts out of AI
        ("noindex", None, []),
        ("noimageindex", None, []),
        ("unavailable_after: 25 Jun 2010 15:00:00 PST", None, []),
        ("googlebot: nofollow", "googlebot", []),
        ("otherbot: noindex, nofollow", "otherbot", []),
        ("unavailable_after: Wed, 03 Dec 2025 13:09:53 GMT", None, []),
        ("BadBot: noindex, nofollow, googlebot: nofollow", "badbot", []),
        # the same shapes with noai: each of the first three was read as 'allowed' before
        ("max-image-preview:large, noai", None, ["noai"]),
        ("max-snippet: 50, noai", None, ["noai"]),
        ("unavailable_after: 2030-01-01, noai", None, ["noai"]),
        ("unavailable_after: Wed, 03 Dec 2025 13:09:53 GMT, noimageai", None, ["noimageai"]),
        ("max-snippet:20, max-image-preview:large, NoAI", None, ["noai"]),
        # a scope holds for the rules after it, until the next scope (MDN's grammar)
        ("BadBot: noindex, noai, googlebot: nofollow", "BadBot", ["noai"]),
        ("BadBot: noindex, noai, googlebot: nofollow", "googlebot", []),
        ("BadBot: noindex, noai, googlebot: nofollow", None, []),
        ("noai, googlebot: nofollow", None, ["noai"]),
        ("googlebot: nofollow, img2dataset: noai", "img2dataset", ["noai"]),
        ("googlebot: max-snippet: 20, noimageai", "googlebot", ["noimageai"]),
    ],
)
def test_x_robots_tag_follows_the_documented_grammar(value, agent, expected):
    assert robots_tag.ai_directives(value, agent) == expected


# ---- TDMRep (W3C TDM Reservation Protocol) -------------------------------------------------


def test_tdmrep_headers_as_the_spec_shows_them():
    # the spec's example responses: "tdm-reservation: 1", then with "tdm-policy: <url>"
    [reserved] = usage_headers.signals({"headers": {"tdm-reservation": "1"}})
    assert reserved.code == "tdm_reserved"
    policy = "https://provider.com/policies/policy.json"
    [licensed] = usage_headers.signals({"tdm-reservation": "1", "tdm-policy": policy})
    assert licensed.code == "tdm_reserved" and policy in licensed.words
    assert usage_headers.signals({"tdm-reservation": "0", "tdm-policy": policy}) == []
    # "Other values are considered protocol errors": guard fails closed
    [bad] = usage_headers.signals({"TDM-Reservation": "yes"})
    assert bad.code == "usage_header_unreadable"


# ---- IETF AI preferences: Content-Usage (attach-05, vocab-07) --------------------------------


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("train-ai=n", "aipref_train_ai_n"),  # attach-05's example
        ("train-ai=y, search=n", None),  # vocab-07's examples
        ('train-ai=y, train-ai, search=n, search="n"', None),  # all unknown: the last wins
        ("train-ai;allow=n, train-ai=y", None),  # allow; parameters are ignored
        ('train-ai=n;has;parameters="?"', "aipref_train_ai_n"),
        ("search=y, train-genai=n", "aipref_train_ai_n"),  # drafts 02-03's label
        ('train-ai="n"', None),  # a string, not the token n: unknown
        ("Train-AI=n", "usage_header_unreadable"),  # keys are lower case: no dictionary
        ("train-ai=n,,", "usage_header_unreadable"),
    ],
)
def test_content_usage_is_an_rfc_9651_dictionary(value, code):
    got = usage_headers.signals({"Content-Usage": value})
    assert [s.code for s in got] == ([code] if code else [])


def test_content_usage_field_lines_are_combined_before_parsing():
    lines = {"headers": {"content-usage": ["search=y", "train-ai=n"]}}
    assert [s.code for s in usage_headers.signals(lines)] == ["aipref_train_ai_n"]


# ---- Cloudflare Content Signals ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("search=yes, ai-train=no", "content_signal_ai_train_no"),  # the managed robots.txt line
        ("ai-train=yes, search=yes, ai-input=yes", None),  # the Markdown for Agents header
        ("search=yes, ai-input=no", None),  # no ai-train signal: neither grants nor restricts
        ("AI-Train=No", "content_signal_ai_train_no"),
        ("ai-train=maybe", "usage_header_unreadable"),
        ("ai-train", "usage_header_unreadable"),
    ],
)
def test_content_signal(value, code):
    got = usage_headers.signals({"content_signal": value})
    assert [s.code for s in got] == ([code] if code else [])


# ---- IPTC PLUS DataMining: the URI, the bare term or IPTC's text label ------------------------


@pytest.mark.parametrize(
    ("term", "label", "training"),
    [
        ("DMI-UNSPECIFIED", "Unspecified - no prohibition defined", None),
        ("DMI-ALLOWED", "Allowed", "allowed"),
        ("DMI-PROHIBITED-AIMLTRAINING", "Prohibited for AI/ML training", "notAllowed"),
        (
            "DMI-PROHIBITED-GENAIMLTRAINING",
            "Prohibited for Generative AI/ML training",
            "notAllowed",
        ),
        (
            "DMI-PROHIBITED-EXCEPTSEARCHENGINEINDEXING",
            "Prohibited except for search engine indexing",
            "notAllowed",
        ),
        ("DMI-PROHIBITED", "Prohibited", "notAllowed"),
        ("DMI-PROHIBITED-SEECONSTRAINT", "Prohibited, see plus:OtherConstraints", "constrained"),
        (
            "DMI-PROHIBITED-SEEEMBEDDEDRIGHTSEXPR",
            "Prohibited, see iptcExt:EmbdEncRightsExpr",
            "constrained",
        ),
        (
            "DMI-PROHIBITED-SEELINKEDRIGHTSEXPR",
            "Prohibited, see iptcExt:LinkedEncRightsExpr",
            "constrained",
        ),
    ],
)
def test_every_iptc_data_mining_term_and_label(term, label, training):
    assert vocab.plus_to_training(vocab.PLUS + term) == training
    assert vocab.plus_to_training(term) == training
    assert vocab.plus_to_training(label) == training
    assert vocab.plus_to_training(label.upper()) == training


def test_iptc_data_mining_that_is_no_term_is_unreadable_and_guard_writes_iptc_terms():
    assert vocab.plus_to_training("Unspecified \u2013 no prohibition defined") is None  # en dash
    assert vocab.plus_to_training("no thanks") == vocab.UNREADABLE
    assert vocab.plus_to_training(vocab.PLUS + "DMI-PROHIBITED-TYPO") == vocab.UNREADABLE
    for value in vocab.PLUS_DATA_MINING.values():  # what guard writes is an IPTC term
        term = value.removeprefix(vocab.PLUS)
        assert vocab.PLUS_TERMS[term][0], term


# ---- end to end: what the downloader recorded reaches the scan's decision ----------------------


def test_each_vocabulary_decides_the_scan(tmp_path):
    import io
    import json

    import guard
    from guard.provenance import xmp
    from tests.scan_corpus.corpus import picture
    from tests.scan_corpus.parts import xmp_only

    def jpeg(seed):
        buf = io.BytesIO()
        picture(seed, 96, 64).save(buf, "JPEG", quality=85)
        return buf.getvalue()

    metas = {
        "tdm": {"headers": {"tdm-reservation": "1"}},
        "aipref": {"Content-Usage": "train-ai=n"},
        "signal": {"content-signal": "search=yes, ai-train=no"},
        "robots": {"X-Robots-Tag": "max-snippet: 50, noai"},
        "broken": {"Content-Usage": "Train-AI=n"},
        "fine": {"Content-Usage": "train-ai=y", "tdm-reservation": "0"},
    }
    for i, (name, meta) in enumerate(metas.items()):
        (tmp_path / f"{name}.jpg").write_bytes(jpeg(i))
        (tmp_path / f"{name}.json").write_text(json.dumps(meta))
    label = xmp_only(jpeg(9), {xmp.DATA_MINING: "Prohibited for Generative AI/ML training"})
    (tmp_path / "label.jpg").write_bytes(label)
    (tmp_path / "garbled.jpg").write_bytes(xmp_only(jpeg(10), {xmp.DATA_MINING: "nope"}))
    rows = {r.path.rsplit("/", 1)[1]: r for r in guard.scan([tmp_path], workers=0, watermark=False)}
    decisions = {name: row.decision for name, row in rows.items()}
    assert decisions == {
        "tdm.jpg": "opted_out",
        "aipref.jpg": "opted_out",
        "signal.jpg": "opted_out",
        "robots.jpg": "opted_out",
        "broken.jpg": "unverifiable",
        "fine.jpg": "allowed",
        "label.jpg": "opted_out",
        "garbled.jpg": "unverifiable",
    }
    assert rows["tdm.jpg"].signals == ["tdm_reserved"]
    assert rows["label.jpg"].signals == ["xmp_training_not_allowed"]
    assert rows["garbled.jpg"].signals == ["xmp_training_unreadable"]
