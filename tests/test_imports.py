from __future__ import annotations

from pathlib import Path

import pytest

from julia.core.app import App
from julia.core.errors import ImportRejected, InvalidInput
from julia.domain import medicos, vagas

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


async def _count(app: App, table: str) -> int:
    async with app.pool.connection() as conn:
        cur = await conn.execute(f"SELECT count(*) AS n FROM {table}")
        row = await cur.fetchone()
        assert row is not None
        return int(row["n"])


def _csv(tmp_path: Path, text: str, name: str = "f.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


async def test_import_examples_and_reimport_updates_instead_of_duplicating(app: App) -> None:
    first = await medicos.import_medicos(app, EXAMPLES / "medicos.csv")
    assert (first.inserted, first.updated, first.skipped) == (5, 0, [])
    again = await medicos.import_medicos(app, EXAMPLES / "medicos.csv")
    assert (again.inserted, again.updated) == (0, 5)
    assert await _count(app, "medicos") == 5
    ana = await medicos.get_by_phone(app, "11 99999-8888")
    assert ana.nome == "Dra. Ana Souza" and ana.especialidade == "Clínica Médica"
    assert ana.tags == ["plantonista", "noturno"] and ana.uf == "SP"
    elisa = await medicos.get_by_phone(app, "+5564981140676")  # stored with the ninth digit
    assert elisa.id_externo == "M-005"


async def test_bad_rows_reject_the_whole_file_and_change_nothing(app: App) -> None:
    await medicos.import_medicos(app, EXAMPLES / "medicos.csv")
    audit_before = await _count(app, "audit_log")
    with pytest.raises(ImportRejected) as info:
        await medicos.import_medicos(app, EXAMPLES / "medicos_invalid.csv")
    assert [(e.line, e.reason.split(":")[0]) for e in info.value.errors] == [
        (3, "telefone is required"),
        (4, "invalid phone ...23"),
        (5, "invalid phone 2099...8888"),
    ]
    assert "line 3" in str(info.value) and "line 5" in str(info.value)
    assert await _count(app, "medicos") == 5
    assert await _count(app, "audit_log") == audit_before


async def test_skip_invalid_imports_the_good_rows_and_reports_the_rest(app: App) -> None:
    result = await medicos.import_medicos(app, EXAMPLES / "medicos_invalid.csv", skip_invalid=True)
    assert result.inserted == 1 and [e.line for e in result.skipped] == [3, 4, 5]
    assert await _count(app, "medicos") == 1


async def test_duplicate_phone_in_one_file_is_a_bad_row(app: App, tmp_path: Path) -> None:
    path = _csv(tmp_path, "nome,telefone\nA,11999998888\nB,(11) 99999-8888\n")
    with pytest.raises(ImportRejected, match="line 3: duplicate telefone of line 2"):
        await medicos.import_medicos(app, path)


async def test_unknown_column_is_an_error(app: App, tmp_path: Path) -> None:
    path = _csv(tmp_path, "nome,telefone,idade\nA,11999998888,40\n")
    with pytest.raises(InvalidInput, match="unknown column"):
        await medicos.import_medicos(app, path)
    with pytest.raises(InvalidInput, match="missing required column"):
        await medicos.import_medicos(app, _csv(tmp_path, "nome\nA\n", "g.csv"))
    assert await _count(app, "medicos") == 0


async def test_reimport_by_id_externo_updates_a_changed_phone(app: App, tmp_path: Path) -> None:
    await medicos.import_medicos(
        app, _csv(tmp_path, "nome,telefone,id_externo\nA,11999998888,X1\n")
    )
    result = await medicos.import_medicos(
        app, _csv(tmp_path, "nome,telefone,id_externo\nA2,21988887777,X1\n", "g.csv")
    )
    assert (result.inserted, result.updated) == (0, 1)
    (only,) = await medicos.list_medicos(app)
    assert (only.nome, only.telefone) == ("A2", "+5521988887777")


async def test_vagas_import_creates_hospitals_and_updates_on_reimport(app: App) -> None:
    first = await vagas.import_vagas(app, EXAMPLES / "vagas.csv")
    assert first.inserted == 5
    assert (await vagas.import_vagas(app, EXAMPLES / "vagas.csv")).updated == 5
    assert await _count(app, "hospitais") == 3
    rows = await vagas.list_vagas(app, status="aberta")
    assert len(rows) == 5
    # periodo derived when the file leaves it empty
    assert {v.id_externo: v.periodo for v in rows}["V-1003"] == "manha"


async def test_vagas_without_external_id_are_matched_by_their_natural_key(
    app: App, tmp_path: Path
) -> None:
    text = "hospital,especialidade,data,inicio,fim,valor\nH,Pediatria,2026-12-01,07:00,13:00,900\n"
    await vagas.import_vagas(app, _csv(tmp_path, text))
    await vagas.import_vagas(app, _csv(tmp_path, text.replace("900", "950"), "g.csv"))
    (v,) = await vagas.list_vagas(app)
    assert str(v.valor) == "950.00"


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("H,P,2026-13-01,07:00,13:00,900", "is not a date"),
        ("H,P,2026-12-01,7h,13:00,900", "is not a time"),
        ("H,P,2026-12-01,07:00,13:00,abc", "is not a number"),
        ("H,P,2026-12-01,07:00,13:00,-5", "must be zero or more"),
    ],
)
async def test_bad_vaga_rows(app: App, tmp_path: Path, row: str, reason: str) -> None:
    path = _csv(tmp_path, f"hospital,especialidade,data,inicio,fim,valor\n{row}\n")
    with pytest.raises(ImportRejected, match=reason):
        await vagas.import_vagas(app, path)
    assert await _count(app, "vagas") == 0 and await _count(app, "hospitais") == 0


async def test_optout_is_recorded_with_reason_and_audited(app: App) -> None:
    await medicos.import_medicos(app, EXAMPLES / "medicos.csv")
    m = await medicos.optout(app, "(21) 98888-7777", motivo="pediu para sair")
    assert m.opted_out and m.opted_out_motivo == "pediu para sair"
    assert m.opted_out_em == app.clock.now()  # type: ignore[attr-defined]
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT operador, acao, motivo FROM audit_log WHERE acao = 'medicos.optout'"
        )
        assert await cur.fetchall() == [
            {"operador": "tester", "acao": "medicos.optout", "motivo": "pediu para sair"}
        ]


# --- issue 12, item 12: every bad row is a named line with a reason -----------------

VAGAS_HEADER = "hospital,especialidade,data,inicio,fim,valor\n"


@pytest.mark.parametrize(
    ("valor", "reason"),
    [("1e20", "over the largest value"), ("99999999999", "over the largest value"),
     ("NaN", "is not a number"), ("Infinity", "is not a number")],
)  # fmt: skip
async def test_vaga_valores_postgres_cannot_hold_are_named_lines(
    app: App, tmp_path: Path, valor: str, reason: str
) -> None:
    path = _csv(
        tmp_path,
        VAGAS_HEADER + f"H,P,2026-12-01,07:00,13:00,900\nH,P,2026-12-02,07:00,13:00,{valor}\n",
    )
    with pytest.raises(ImportRejected, match=f"line 3: valor .*{reason}"):
        await vagas.import_vagas(app, path)
    assert await _count(app, "vagas") == 0


async def test_a_nul_byte_is_a_named_line(app: App, tmp_path: Path) -> None:
    path = _csv(tmp_path, "nome,telefone\nA,11999998888\nB\x00,11999997777\nC,11999996666\n")
    with pytest.raises(ImportRejected, match="line 3: contains a NUL byte") as err:
        await medicos.import_medicos(app, path)
    assert [e.line for e in err.value.errors] == [3]
    result = await medicos.import_medicos(app, path, skip_invalid=True)
    assert result.inserted == 2 and [e.line for e in result.skipped] == [3]
    vaga = _csv(tmp_path, VAGAS_HEADER + "H,P,2026-12-01,07:00,13:00,9\x000\n", "v.csv")
    with pytest.raises(ImportRejected, match="line 2: contains a NUL byte"):
        await vagas.import_vagas(app, vaga)


async def test_non_ascii_digits_in_a_phone_are_a_named_line(app: App, tmp_path: Path) -> None:
    path = _csv(tmp_path, "nome,telefone\nA,11999998888\nB,١١٩٩٩٩٩٧٧٧٧\n")
    with pytest.raises(ImportRejected, match="line 3: invalid phone"):
        await medicos.import_medicos(app, path)
    assert await _count(app, "medicos") == 0


async def test_one_id_externo_with_two_phones_is_a_named_line(app: App, tmp_path: Path) -> None:
    path = _csv(tmp_path, "nome,telefone,id_externo\nA,11999998888,X1\nB,11999997777,X1\n")
    with pytest.raises(ImportRejected, match="line 3: duplicate id_externo of line 2"):
        await medicos.import_medicos(app, path)


async def test_an_id_externo_moved_onto_another_doctors_phone_is_a_named_line(
    app: App, tmp_path: Path
) -> None:
    await medicos.import_medicos(
        app, _csv(tmp_path, "nome,telefone,id_externo\nA,11999998888,X1\nB,11999997777,X2\n")
    )
    moved = _csv(tmp_path, "nome,telefone,id_externo\nA,11999997777,X1\n", "moved.csv")
    with pytest.raises(ImportRejected, match="line 2: id_externo X1 is doctor #"):
        await medicos.import_medicos(app, moved)
    taken = _csv(tmp_path, "nome,telefone,id_externo\nB,11999997777,X9\n", "taken.csv")
    with pytest.raises(ImportRejected, match="line 2: telefone belongs to doctor #"):
        await medicos.import_medicos(app, taken)
    result = await medicos.import_medicos(app, moved, skip_invalid=True)
    assert (result.inserted, result.updated, len(result.skipped)) == (0, 0, 1)
    phones = {m.id_externo: m.telefone for m in await medicos.list_medicos(app)}
    assert phones == {"X1": "+5511999998888", "X2": "+5511999997777"}  # unchanged


async def test_a_repeated_header_column_is_refused(app: App, tmp_path: Path) -> None:
    path = _csv(tmp_path, "nome,telefone,nome\nA,11999998888,B\n")
    with pytest.raises(InvalidInput, match="nome appear more than once"):
        await medicos.import_medicos(app, path)
    assert await _count(app, "medicos") == 0


async def test_a_due_time_past_the_last_date_is_a_named_line(app: App, tmp_path: Path) -> None:
    from julia.fila import manual

    path = _csv(tmp_path, "telefone,texto,agendar_para\n11999998888,oi,+99999999999d\n")
    with pytest.raises(ImportRejected, match="line 2: bad due time"):
        await manual.enqueue_file(app, path)


@pytest.mark.parametrize(
    ("nome", "first"),
    [("Dra. Ana Souza", "Ana"), ("Dr Bruno Lima", "Bruno"), ("DOUTORA Carla", "Carla"),
     ("Ana", "Ana"), ("Dr.", None), ("", None), (None, None)],
)  # fmt: skip
def test_a_doctor_is_greeted_by_a_first_name_not_a_title(
    nome: str | None, first: str | None
) -> None:
    from julia.domain.medicos import first_name

    assert first_name(nome) == first
