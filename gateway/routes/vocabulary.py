"""GET /api/vocabulary — the codes and Chinese labels the console shows (casework.vocabulary)."""

from __future__ import annotations

from fastapi import APIRouter

from casework.vocabulary import VocabularyPublic, vocabulary
from gateway.deps import CurrentUser

router = APIRouter(prefix="/api", tags=["vocabulary"])


@router.get("/vocabulary", response_model=VocabularyPublic)
def get_vocabulary(user: CurrentUser) -> VocabularyPublic:
    """Every signed-in role reads it: labels only, nothing about residents."""
    return vocabulary()
