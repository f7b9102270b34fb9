"""The admin's training form with the serving choice."""

from __future__ import annotations

from django import forms

from ml.forms import TrainForm


class TrainServeForm(TrainForm):
    """TrainForm plus what happens once trained: index the catalogue and switch search to it."""

    auto_activate = forms.BooleanField(
        required=False, initial=True, label="Index and activate when trained",
        help_text="Reindex the catalogue after training and switch search to this model once its vectors cover it.",
    )
