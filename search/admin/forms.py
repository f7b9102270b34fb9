"""The admin's training form with the serving choice."""

from __future__ import annotations

from django import forms

from ml import budget as budgets
from ml.forms import TrainForm


class TrainServeForm(TrainForm):
    """TrainForm plus how long it trains (a budget instead of epochs) and what happens once trained:
    index the catalogue and switch search to it."""

    budget = forms.CharField(
        required=False,
        max_length=32,
        label="Training budget",
        help_text="Instead of epochs: steps (20000steps), wall time (30m, 2h) or auto (grows with the square root "
        "of the products). Each step samples products, a photo of each and augmented views. Empty: epochs.",
    )
    OVERRIDES = (*TrainForm.OVERRIDES, "budget")

    auto_activate = forms.BooleanField(
        required=False,
        initial=True,
        label="Index and activate when trained",
        help_text="Reindex the catalogue after training and switch search to this model once its vectors cover it.",
    )

    def clean_budget(self):
        text = (self.cleaned_data.get("budget") or "").strip()
        try:
            budget = budgets.parse(text)
        except budgets.BudgetError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return budget.text if budget else ""
