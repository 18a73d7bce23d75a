"""The agent's operator tools: `julia eval` (the suites pass on the sandbox model),
`julia conversas list|show`, `julia chat`, `julia vagas reservar|confirmar|cancelar`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from agent_kit import seed
from julia.agent import evals
from julia.core.app import App
from julia.settings import Settings


def seeded(settings: Settings, *, today: bool = False) -> dict[str, int]:
    """The test shifts (fixed dates), or with ``today`` the eval ones (dated from now)."""

    async def go() -> dict[str, int]:
        async with App.open(settings) as app:
            if today:
                await evals.seed(app)
                return {}
            return await seed(app)

    return asyncio.run(go())


def audit_rows(settings: Settings, alvo: str) -> list[str]:
    async def go() -> list[str]:
        async with App.open(settings) as app, app.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT acao FROM audit_log WHERE alvo = %s ORDER BY id", (alvo,)
            )
            return [r["acao"] for r in await cur.fetchall()]

    return asyncio.run(go())


def test_the_eval_suites_pass_on_the_sandbox_model(cli: Any, env: dict[str, str],
                                                    sandbox_llm_server: Any) -> None:  # fmt: skip
    url, _ = sandbox_llm_server
    env["JULIA_ANTHROPIC_BASE_URL"] = url
    env["JULIA_LLM_MAX_RETRIES"] = "0"
    assert len(evals.load()) >= 30
    r = cli("eval")
    last = json.loads(r.output.strip().splitlines()[-1])
    assert r.exit_code == 0, r.output[-3000:]
    assert last["total"] >= 30 and last["failed"] == 0 and last["passed"] == last["total"]
    r = cli("eval", "seguranca", "--json")
    data = json.loads(r.output.strip().splitlines()[-1])
    assert r.exit_code == 0 and data["total"] == len(evals.load("seguranca"))
    assert all(res["passed"] for res in data["results"])


def test_a_failing_eval_exits_non_zero(cli: Any, env: dict[str, str], sandbox_llm_server: Any,
                                       tmp_path: Any, monkeypatch: Any) -> None:  # fmt: skip
    url, _ = sandbox_llm_server
    env["JULIA_ANTHROPIC_BASE_URL"] = url
    (tmp_path / "ruim.yaml").write_text(
        "conversas:\n  - nome: espera o impossível\n    turnos:\n"
        "      - medico: oi\n        espera: {contem: [R$ 99.999]}\n"
    )
    monkeypatch.setattr(evals, "directory", lambda: tmp_path)
    r = cli("eval", "ruim")
    assert r.exit_code == 1
    assert json.loads(r.output.strip().splitlines()[-1]) == {"total": 1, "passed": 0, "failed": 1}
    r = cli("eval", "nao-existe")
    assert r.exit_code != 0 and "no eval suite" in r.output


def test_vagas_reservar_confirmar_cancelar_are_audited(cli: Any, settings: Settings) -> None:
    ids = seeded(settings)
    vaga = str(ids["sab_lucas"])
    r = cli("vagas", "reservar", vaga, "--telefone", "+5511911110001",
            "--motivo", "pediu por telefone", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["status"] == "reservada"
    r = cli("vagas", "reservar", vaga, "--telefone", "+5511911110002", "--motivo", "de novo")
    assert r.exit_code != 0 and "reservada" in r.output
    assert cli("vagas", "confirmar", vaga, "--motivo", "hospital aceitou").exit_code == 0
    r = cli("vagas", "cancelar", vaga, "--motivo", "médico desistiu", "--json")
    assert json.loads(r.output)["status"] == "aberta"
    assert cli("vagas", "confirmar", vaga, "--motivo", " ").exit_code != 0
    assert audit_rows(settings, vaga) == ["vagas.reservar", "vagas.confirmar", "vagas.cancelar"]


def test_chat_then_conversas_show_the_thread(cli: Any, env: dict[str, str], settings: Settings,
                                             sandbox_llm_server: Any) -> None:  # fmt: skip
    url, _ = sandbox_llm_server
    env["JULIA_ANTHROPIC_BASE_URL"] = url
    seeded(settings, today=True)
    r = cli("chat", "--telefone", "+5511911110001",  # a new doctor: a lead, no specialty
            input="tem plantão de cardiologia no sábado?\nquero a primeira\n")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "buscar_vagas" in r.output and "reservar_vaga" in r.output and "reservei" in r.output
    r = cli("conversas", "list", "--json")
    rows = json.loads(r.output)
    assert [row["turnos"] for row in rows] == [2]
    r = cli("conversas", "show", "+5511911110001", "--json")
    data = json.loads(r.output)
    assert [t["status"] for t in data["turnos"]] == ["respondido", "respondido"]
    assert data["turnos"][1]["tool_calls"][0]["name"] == "reservar_vaga"
    r = cli("conversas", "show", "+5511911110001")
    assert "reservar_vaga" in r.output and "+5511911110001" not in r.output  # masked
    assert cli("conversas", "show", "+5511955554444").exit_code != 0
    assert cli("conversas", "list", "--status", "nada").exit_code != 0
