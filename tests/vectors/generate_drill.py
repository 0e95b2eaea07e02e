"""Seeded generator of the drill message vectors (docs/protocol.md §11, issue 13).

    .venv/bin/python tests/vectors/generate_drill.py            # rewrite tests/vectors/drill/*.txt
    .venv/bin/python tests/vectors/generate_drill.py --out DIR  # write elsewhere

Same file format as generate.py (header lines, a blank line, the bytes). Keys, challenges and
times come from fixed labels; the one sealed box is made with a seeded ephemeral key by the
construction libsodium's crypto_box_seal_open opens (generate.py explains it). Kinds (the `kind`
header names the check, tests/vectors/test_drill_vectors.py runs it):

- `drill-answer`: a party-signed answer, verified with the party key in `signer`;
- `drill-request`: an editor's drill-only request, verified under its own label; the same
  document presented as a `request` (the real-request label) MUST fail;
- `drill-challenge`: a challenge sealed to `identity`'s public key; opening it gives `challenge`
  (hex), whose digest is `digest`.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import nacl.bindings
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from vault.encoding import b64e, canonical_json
from vault.nodeproto.messages import drill_digest, make_drill_answer, make_drill_request
from vault.signing import sign_document

HERE = Path(__file__).resolve().parent
SEED = b"velador drill vectors v1"
T0 = 1_767_225_600


def derive(label: str, n: int = 32) -> bytes:
    return hashlib.blake2b(label.encode(), key=SEED, digest_size=n).digest()


OUTLET = SigningKey(derive("outlet/ed25519"))
OUTLET_BOX = PrivateKey(derive("outlet/x25519"))
EDITOR = SigningKey(derive("editor/ed25519"))
FORGER = SigningKey(derive("forger/ed25519"))
CASE_ID = derive("case-id", 10).hex()
NODE_FP = "nodo-cdmx-fp-0001"
CHALLENGE = derive("challenge")


def pk(key: SigningKey) -> str:
    return b64e(bytes(key.verify_key))


def answer(key: SigningKey, **over) -> dict:
    args = dict(
        case_id=CASE_ID,
        drill="d0123456789abcdef",
        node=NODE_FP,
        role="recipient",
        proof=b64e(CHALLENGE),
        reached=[NODE_FP, "node-berlin-fp-02"],
        stores={"checked": 2, "ok": 2},
        version="0.1.0",
        now=T0,
    )
    args.update(over)
    return make_drill_answer(key, **args)


def sealed_challenge() -> bytes:
    pk_bytes = bytes(OUTLET_BOX.public_key)
    epk, esk = nacl.bindings.crypto_box_seed_keypair(derive("ephemeral"))
    nonce = hashlib.blake2b(epk + pk_bytes, digest_size=24).digest()
    return epk + nacl.bindings.crypto_box(CHALLENGE, nonce, pk_bytes, esk)


def all_vectors() -> list[tuple[str, dict[str, str], bytes]]:
    out = []

    def add(name, expect, comment, kind, doc, **headers):
        body = doc if isinstance(doc, bytes) else canonical_json(doc)
        h = {"expect": expect, "comment": comment, "kind": kind, **headers}
        out.append((f"drill/{name}", h, body))

    add(
        "answer-valid",
        "success",
        "a recipient's answer",
        "drill-answer",
        answer(OUTLET),
        signer=pk(OUTLET),
    )
    add(
        "answer-other-signer",
        "authentication error",
        "signed by a key other than the party's",
        "drill-answer",
        answer(FORGER),
        signer=pk(OUTLET),
    )
    bad = answer(OUTLET)
    bad["body"] = dict(bad["body"], extra=1)
    bad = sign_document("drill-answer", bad["body"], OUTLET)
    add(
        "answer-unknown-member",
        "format error",
        "a member version 1 does not know",
        "drill-answer",
        bad,
        signer=pk(OUTLET),
    )
    v2 = sign_document("drill-answer", dict(answer(OUTLET)["body"], v=2), OUTLET)
    add(
        "answer-unknown-version",
        "format error",
        "version 2 is refused before anything else",
        "drill-answer",
        v2,
        signer=pk(OUTLET),
    )
    as_heartbeat = dict(answer(OUTLET), kind="heartbeat")
    add(
        "answer-relabelled",
        "format error",
        "an answer presented as another kind",
        "drill-answer",
        as_heartbeat,
        signer=pk(OUTLET),
    )
    req = make_drill_request(EDITOR, CASE_ID, "d0123456789abcdef", NODE_FP, b64e(CHALLENGE), T0)
    add(
        "request-valid",
        "success",
        "an editor's drill-only request",
        "drill-request",
        req,
        signer=pk(EDITOR),
    )
    add(
        "request-as-real-request",
        "authentication error",
        "the drill-only request presented as a real request: its label differs, so it fails",
        "drill-request",
        dict(req, kind="request"),
        signer=pk(EDITOR),
    )
    add(
        "challenge-sealed",
        "success",
        "a recipient's challenge, sealed to its box key",
        "drill-challenge",
        b64e(sealed_challenge()).encode(),
        identity=b64e(bytes(OUTLET_BOX)),
        challenge=CHALLENGE.hex(),
        digest=drill_digest(CHALLENGE),
    )
    add(
        "challenge-other-key",
        "authentication error",
        "the same challenge opened with another key (a lost key) fails",
        "drill-challenge",
        b64e(sealed_challenge()).encode(),
        identity=b64e(derive("other/x25519")),
        challenge=CHALLENGE.hex(),
        digest=drill_digest(CHALLENGE),
    )
    return out


def render(headers: dict[str, str], body: bytes) -> bytes:
    return "".join(f"{k}: {v}\n" for k, v in headers.items()).encode() + b"\n" + body + b"\n"


def write(out: Path) -> list[Path]:
    written = []
    for name, headers, body in all_vectors():
        path = out / f"{name}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(render(headers, body))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write into")
    args = parser.parse_args(argv)
    written = write(args.out)
    print(f"wrote {len(written)} drill vectors under {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
