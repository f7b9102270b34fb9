from django import forms

from . import hparams as hp


class TrainForm(forms.Form):
    """What an admin chooses when starting a training run; empty fields take the defaults."""

    architecture = forms.ChoiceField(choices=[(a, a) for a in hp.ARCHITECTURES], initial=hp.DEFAULT_ARCHITECTURE)
    variant = forms.ChoiceField(
        choices=[("", "—")] + [(v, v) for v in hp.CLASSIFIER_VARIANTS], required=False, help_text="Classifier only."
    )
    epochs = forms.IntegerField(min_value=1, max_value=1000, required=False)
    image_size = forms.IntegerField(min_value=8, max_value=1024, required=False)
    dim = forms.IntegerField(min_value=1, max_value=hp.MAX_DIM, required=False, label="Embedding dimension")
    batch_size = forms.IntegerField(min_value=2, max_value=65536, required=False)
    lr = forms.FloatField(min_value=1e-7, max_value=10, required=False, label="Learning rate")
    seed = forms.IntegerField(min_value=0, required=False)
    precision = forms.ChoiceField(
        choices=[("", "—")] + [(p, p) for p in hp.PRECISIONS], required=False,
        help_text="auto: bfloat16 arithmetic where the CPU or GPU has it (about twice as fast), else float32.",
    )

    OVERRIDES = ("epochs", "image_size", "dim", "batch_size", "lr", "seed", "precision")

    def clean(self):
        data = super().clean()
        if data.get("variant") and data.get("architecture") != "classifier":
            self.add_error("variant", "A variant applies to the classifier only.")
        if not self.errors:
            try:
                hp.defaults(data["architecture"], data.get("variant") or None, **self.overrides()).validate(data["architecture"])
            except ValueError as exc:
                raise forms.ValidationError(str(exc)) from exc
        return data

    def overrides(self) -> dict:
        return {k: self.cleaned_data[k] for k in self.OVERRIDES if self.cleaned_data.get(k) not in (None, "")}
