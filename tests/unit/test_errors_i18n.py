"""Every error the library raises can be shown in Spanish (vault/errors.py, cli/i18n.py).

Two halves:
- a scan of vault/ (AST, no import side effects) that fails when a VeladorError, or a subclass,
  is built with a message or hint that is not an `N_("...")` template: an f-string, a plain
  literal or a concatenation would reach the reader in English whatever their language;
- real errors raised by real calls (a wrong passphrase, a damaged object, an unknown case, a
  node that does not answer) rendered through `cli.i18n.error_text` in Spanish, values filled.
"""

from __future__ import annotations

import ast
import socket
from pathlib import Path

import pytest

from cli import i18n
from vault import errors as verrors

VAULT = Path(__file__).resolve().parents[2] / "vault"

ALLOWED: dict[tuple[str, str], str] = {
    # (file, function) -> why its raise is not a literal N_ call at the raise site.
    ("nodeproto/client.py", "_answer"): "the class and the message come from the node's status "
    "and error code: _NODE_ANSWERS values and the fallbacks there are all N_ templates",
}


def _error_classes(trees: dict[str, ast.Module]) -> set[str]:
    """VeladorError and every subclass defined in vault/ (by name)."""
    names = {
        n
        for n in dir(verrors)
        if isinstance(getattr(verrors, n), type) and issubclass(getattr(verrors, n), Exception)
    }
    names &= {n for n in names if issubclass(getattr(verrors, n), verrors.VeladorError)}
    grew = True
    while grew:
        grew = False
        for tree in trees.values():
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name not in names:
                    bases = {
                        b.id if isinstance(b, ast.Name) else getattr(b, "attr", "")
                        for b in node.bases
                    }
                    if bases & names:
                        names.add(node.name)
                        grew = True
    return names


def _is_n(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "N_"
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    )


class _Module:
    """What names in one module are bound to: `X = N_(...)` constants and dicts of them."""

    def __init__(self, tree: ast.Module) -> None:
        self.bound: dict[str, list[ast.AST]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        self.bound.setdefault(target.id, []).append(node.value)
                    elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                        for t, v in zip(target.elts, node.value.elts, strict=False):
                            if isinstance(t, ast.Name):
                                self.bound.setdefault(t.id, []).append(v)
            elif (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and node.value is not None
            ):
                self.bound.setdefault(node.target.id, []).append(node.value)

    def template(self, node: ast.AST, hint: bool = False, depth: int = 0) -> bool:
        """Is `node` an N_ template (or, for a hint, None), directly or through a constant?"""
        if depth > 5:
            return False
        if _is_n(node):
            return True
        if hint and isinstance(node, ast.Constant) and node.value is None:
            return True
        if isinstance(node, ast.IfExp):
            return self.template(node.body, hint, depth + 1) and self.template(
                node.orelse, hint, depth + 1
            )
        if isinstance(node, ast.Name) and node.id in self.bound:
            return all(self.template(v, hint, depth + 1) for v in self.bound[node.id])
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            values = self.bound.get(node.value.id, [])
            return bool(values) and all(
                isinstance(v, ast.Dict) and all(self.template(x, hint, depth + 1) for x in v.values)
                for v in values
            )
        return False


def _offences() -> list[str]:
    trees = {
        str(p.relative_to(VAULT)): ast.parse(p.read_text(encoding="utf-8"))
        for p in sorted(VAULT.rglob("*.py"))
    }
    classes = _error_classes(trees)
    found = []
    for rel, tree in trees.items():
        module = _Module(tree)
        for func in [tree, *[n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]]:
            fname = getattr(func, "name", "<module>")
            body = func.body if isinstance(func, ast.FunctionDef) else tree.body
            for stmt in body:
                for node in ast.walk(stmt):
                    if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                        callee = node.exc.func
                        dynamic = not isinstance(callee, ast.Name | ast.Attribute)
                        if (
                            dynamic
                            and (rel, fname) not in ALLOWED
                            and not (
                                isinstance(callee, ast.Call) and ast.unparse(callee) == "type(exc)"
                            )
                        ):
                            found.append(f"{rel}:{node.lineno} raises a computed class")
                    if not isinstance(node, ast.Call):
                        continue
                    callee = node.func
                    name = callee.id if isinstance(callee, ast.Name) else None
                    if isinstance(callee, ast.Attribute):
                        name = callee.attr
                    if isinstance(callee, ast.Call) and ast.unparse(callee) == "type(exc)":
                        name = "VeladorError"  # re-raising a caught error's class
                    if name not in classes or (rel, fname) in ALLOWED:
                        continue
                    msg = node.args[0] if node.args else None
                    if msg is None or not module.template(msg):
                        found.append(f"{rel}:{node.lineno} {name}: message is not an N_ template")
                    for kw in node.keywords:
                        if kw.arg == "hint" and not module.template(kw.value, hint=True):
                            found.append(f"{rel}:{node.lineno} {name}: hint is not an N_ template")
    return sorted(set(found))


def test_every_error_in_vault_is_a_translatable_template():
    # Given every module of the library, when its error constructions are read,
    # then each message and hint is an N_ template (or a constant holding one).
    offences = _offences()
    assert not offences, "errors the CLI cannot translate:\n" + "\n".join(offences)


def test_the_scan_catches_the_forms_it_forbids(tmp_path, monkeypatch):
    # The scan is only worth something if it fails on an f-string, a literal and a concatenation.
    bad = tmp_path / "vault"
    bad.mkdir()
    (bad / "m.py").write_text(
        "from vault.errors import N_, FormatError, NodeError\n"
        "def f(x):\n"
        "    raise FormatError(f'bad {x}')\n"
        "def g():\n"
        "    raise NodeError('plain', hint=N_('ok'))\n"
        "def h(x):\n"
        "    raise FormatError(N_('fine'), hint='a ' + x)\n"
        "def k(x):\n"
        "    raise FormatError(N_('fine %(x)s'), hint=N_('fine'), x=x)\n"
    )
    monkeypatch.setattr(__import__(__name__, fromlist=["VAULT"]), "VAULT", bad)
    assert _offences() == [
        "m.py:3 FormatError: message is not an N_ template",
        "m.py:5 NodeError: message is not an N_ template",
        "m.py:7 FormatError: hint is not an N_ template",
    ]


# --- real errors, shown in Spanish ------------------------------------------------------------


@pytest.fixture
def spanish():
    i18n.setup("es")
    yield
    i18n.setup("en")


def _spanish(exc: verrors.VeladorError) -> tuple[str, str | None]:
    message, hint = i18n.error_text(exc)
    assert message != exc.message, f"no Spanish for {exc.template!r}"
    assert "%(" not in message and (hint is None or "%(" not in hint)
    return message, hint


def test_wrong_passphrase_in_spanish(tmp_path, spanish):
    from vault.identity import create_identity, unlock_identity

    create_identity(tmp_path, "Ana", "reporter", "caballo bateria grapa correcta", 1_700_000_000)
    with pytest.raises(verrors.AuthenticationError) as err:
        unlock_identity(tmp_path, "caballo bateria grapa incorrecta")
    message, hint = _spanish(err.value)
    assert message == "la frase de paso no es la de esta identidad"
    assert hint == "revisa la distribución del teclado y las mayúsculas (Bloq Mayús)"


def test_missing_identity_names_the_folder_in_spanish(tmp_path, spanish):
    from vault.identity import unlock_identity

    with pytest.raises(verrors.NotFoundError) as err:
        unlock_identity(tmp_path / "nada", "x")
    message, hint = _spanish(err.value)
    assert message == f"no hay ninguna identidad en {tmp_path / 'nada'}"
    assert hint == "crea una con 'velador id new --name NOMBRE'"


def test_damaged_and_substituted_objects_in_spanish(spanish):
    from pyrage import x25519

    from vault.objects import encrypt, object_id, open_chunk_into

    me = x25519.Identity.generate()
    key, data = bytes(32), b"nota de la fuente"
    oid = object_id(key, data)
    sealed = encrypt(data, str(me.to_public()))
    damaged = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(verrors.AuthenticationError) as err:
        open_chunk_into(damaged, [me], key, oid, len(data))
    message, _ = _spanish(err.value)
    assert message == f"el objeto {oid[:12]} no se puede descifrar: está dañado o fue alterado"
    other = object_id(key, b"otra nota")
    with pytest.raises(verrors.AuthenticationError) as err:
        open_chunk_into(sealed, [me], key, other, len(data))
    message, _ = _spanish(err.value)
    assert message == (
        f"el objeto {other[:12]} no coincide con su identificador: alguien lo sustituyó"
    )


def test_unknown_case_suggests_the_close_name_in_spanish(tmp_path, spanish):
    from vault.state import LocalState

    err = LocalState(tmp_path).no_case("puerta")
    message, hint = _spanish(err)
    assert message == "no hay ningún caso llamado 'puerta'"
    assert hint == "consulta la lista con 'velador case list'"


def test_unreachable_node_in_spanish(spanish):
    from vault.nodeproto.client import NodeClient

    with socket.socket() as sock:  # a port nothing listens on: the connection is refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(verrors.NodeError) as err:
        NodeClient(f"http://127.0.0.1:{port}", None, timeout=5, proxy=None)
    message, hint = _spanish(err.value)
    assert message.startswith("no se pudo contactar al nodo ")
    assert message.endswith(" (ConnectError)")
    assert hint == f"la dirección del nodo es http://127.0.0.1:{port}"


def test_an_error_quoted_inside_another_is_translated_too(spanish):
    # Given a signed manifest that lists one path twice (the reader must refuse it, naming it),
    from vault.manifest import read_signed_manifest

    inner = verrors.UnsafePathError(verrors.N_("manifest lists the path %(path)r twice"), path="a")
    outer = verrors.UnsafePathError(
        verrors.N_("snapshot %(seq)s (%(sid)s) names an unsafe path: %(detail)s; refusing"),
        seq=3,
        sid="abc",
        detail=inner,
    )
    assert (
        outer.message
        == "snapshot 3 (abc) names an unsafe path: manifest lists the path 'a' twice; refusing"
    )
    message, _ = _spanish(outer)
    assert message == (
        "la instantánea 3 (abc) nombra una ruta peligrosa: el manifiesto menciona dos veces la "
        "ruta 'a'; no se usará"
    )
    assert read_signed_manifest  # the function that raises this pair (tests/fuzz drive it)


def test_node_text_with_a_percent_sign_cannot_break_the_error():
    # A node's message is a value, never a template: a stray '%' must not crash the client.
    exc = verrors.PolicyError(
        verrors.N_("node %(node)s: %(detail)s"), node="a", detail="100% %(x)s"
    )
    assert exc.message == "node a: 100% %(x)s"
