"""The demo's sample data: hospitals, specialties, 200 doctors, 60 open shifts, four chips.

Everything is generated from a fixed seed, so two runs see the same doctors, and
written as the CSVs ``julia medicos import`` / ``julia vagas import`` read: the demo
loads its data through the same import code an operator uses.
"""

from __future__ import annotations

import asyncio
import csv
import random
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from julia.chips import pool
from julia.core.app import App
from julia.domain import medicos, vagas

SEED = 2026

FIRST = (
    "Ana",
    "Beatriz",
    "Camila",
    "Carolina",
    "Daniela",
    "Fernanda",
    "Gabriela",
    "Isabela",
    "Juliana",
    "Larissa",
    "Letícia",
    "Mariana",
    "Natália",
    "Patrícia",
    "Renata",
    "Tatiane",
    "Aline",
    "Bruna",
    "Vanessa",
    "Luíza",
    "André",
    "Bruno",
    "Carlos",
    "Daniel",
    "Eduardo",
    "Felipe",
    "Gustavo",
    "Henrique",
    "João",
    "José",
    "Leonardo",
    "Lucas",
    "Marcelo",
    "Mateus",
    "Paulo",
    "Rafael",
    "Ricardo",
    "Rodrigo",
    "Thiago",
    "Vinícius",
)
LAST = (
    "Silva",
    "Santos",
    "Oliveira",
    "Souza",
    "Rodrigues",
    "Ferreira",
    "Alves",
    "Pereira",
    "Lima",
    "Gomes",
    "Costa",
    "Ribeiro",
    "Martins",
    "Carvalho",
    "Almeida",
    "Lopes",
    "Soares",
    "Fernandes",
    "Vieira",
    "Barbosa",
    "Rocha",
    "Dias",
    "Nascimento",
    "Andrade",
    "Moreira",
    "Nunes",
    "Marques",
    "Machado",
    "Mendes",
    "Freitas",
    "Cardoso",
    "Teixeira",
)
#: (DDD, UF, city) where the doctors live.
PLACES = (
    ("11", "SP", "São Paulo"),
    ("19", "SP", "Campinas"),
    ("21", "RJ", "Rio de Janeiro"),
    ("31", "MG", "Belo Horizonte"),
    ("41", "PR", "Curitiba"),
    ("51", "RS", "Porto Alegre"),
    ("61", "DF", "Brasília"),
    ("71", "BA", "Salvador"),
    ("81", "PE", "Recife"),
)
ESPECIALIDADES = (
    "Clínica Médica",
    "Pediatria",
    "Ortopedia",
    "Anestesiologia",
    "Cardiologia",
    "Ginecologia e Obstetrícia",
)
HOSPITAIS = (
    "Hospital São Lucas",
    "Hospital Santa Marta",
    "Santa Casa de Campinas",
    "Hospital Municipal do Tatuapé",
    "Hospital Regional de Osasco",
)
#: (inicio, fim, valor base) of the shift slots.
TURNOS = (
    ("07:00", "19:00", 1400),
    ("19:00", "07:00", 1600),
    ("07:00", "13:00", 800),
    ("13:00", "19:00", 800),
)

#: The incident's pool: four chips, trust 85, 75, 70 and 70 (only the first may prospect).
CHIPS = (("chip-85", 85), ("chip-75", 75), ("chip-70a", 70), ("chip-70b", 70))

N_MEDICOS = 200
N_VAGAS = 60


@dataclass(frozen=True)
class Loaded:
    medicos: int
    vagas: int
    chips: list[pool.Chip]


def _phone(rng: random.Random, ddd: str, used: set[str]) -> str:
    while True:
        number = f"+55{ddd}9{rng.randint(8000_0000, 9999_9999)}"
        if number not in used:
            used.add(number)
            return number


def write_medicos(path: Path, n: int = N_MEDICOS, seed: int = SEED) -> Path:
    rng = random.Random(seed)
    used: set[str] = set()
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["nome", "telefone", "crm", "especialidade", "uf", "cidade", "id_externo"])
        for i in range(n):
            ddd, uf, cidade = rng.choice(PLACES)
            nome = f"{rng.choice(FIRST)} {rng.choice(LAST)} {rng.choice(LAST)}"
            crm = f"{rng.randint(10000, 199999)}-{uf}"
            out.writerow(
                [
                    nome,
                    _phone(rng, ddd, used),
                    crm,
                    rng.choice(ESPECIALIDADES),
                    uf,
                    cidade,
                    f"demo-{i:03d}",
                ]
            )
    return path


def write_vagas(path: Path, today: date, n: int = N_VAGAS, seed: int = SEED) -> Path:
    """``n`` open shifts spread over the next two weeks."""
    rng = random.Random(seed + 1)
    seen: set[tuple[str, str, date, str]] = set()
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["hospital", "especialidade", "data", "inicio", "fim", "valor", "id_externo"])
        i = 0
        while i < n:
            hospital, esp = rng.choice(HOSPITAIS), rng.choice(ESPECIALIDADES)
            dia = today + timedelta(days=1 + rng.randrange(14))
            inicio, fim, base = rng.choice(TURNOS)
            if (hospital, esp, dia, inicio) in seen:
                continue
            seen.add((hospital, esp, dia, inicio))
            valor = base + rng.choice((0, 100, 200, 300, 400))
            out.writerow([hospital, esp, dia.isoformat(), inicio, fim, valor, f"demo-v{i:03d}"])
            i += 1
    return path


def write(folder: Path, today: date) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return write_medicos(folder / "medicos.csv"), write_vagas(folder / "vagas.csv", today)


async def load(app: App, folder: Path) -> Loaded:
    """Write the CSVs into ``folder``, import them, and register the incident's chips."""
    today = app.clock.now().date()
    files = await asyncio.to_thread(write, folder, today)
    m = await medicos.import_medicos(app, files[0])
    v = await vagas.import_vagas(app, files[1])
    chips = [
        await pool.add(
            app, instance=name, telefone=f"+551190000{i:04d}", trust_score=trust, status="active"
        )
        for i, (name, trust) in enumerate(CHIPS, 1)
    ]
    return Loaded(medicos=m.inserted + m.updated, vagas=v.inserted + v.updated, chips=chips)
