"""Human feedback: the store (chats, arena votes, rankings), its export as training data, and ratings (Elo,
Bradley-Terry, agreement). Below serve/ and eval/: the server writes the store, `pixiu eval --tasks elo` reads it.
"""

from pixiu.feedback.store import RankingRow, Store, Vote, model_version, open_store

__all__ = ["RankingRow", "Store", "Vote", "model_version", "open_store"]
