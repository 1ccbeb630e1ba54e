"""Trainee selection (精准选人) and classes (50人编班)."""

from recommender.selection.select import *  # noqa: F403
