from django import forms

from . import hparams as hp
from .architectures import CLASSIFIER_VARIANTS, REGISTRY, defaults

RECOMMENDED = ""  # the architecture value that means "what measures best on this catalogue"


class TrainForm(forms.Form):
    """What an admin chooses when starting a training run; empty fields take the defaults (and an
    empty architecture the one ml.architectures.recommend picks for the catalogue)."""

    architecture = forms.ChoiceField(
        choices=[(RECOMMENDED, "Recommended for this catalogue")] + [(a.name, a.title) for a in REGISTRY.values()],
        required=False,
    )
    variant = forms.ChoiceField(
        choices=[("", "—")] + [(v, v) for v in CLASSIFIER_VARIANTS], required=False, help_text="Classifier only."
    )
    epochs = forms.IntegerField(min_value=1, max_value=1000, required=False)
    image_size = forms.IntegerField(min_value=8, max_value=1024, required=False)
    dim = forms.IntegerField(min_value=1, max_value=hp.MAX_DIM, required=False, label="Embedding dimension")
    batch_size = forms.IntegerField(min_value=2, max_value=65536, required=False)
    lr = forms.FloatField(min_value=1e-7, max_value=10, required=False, label="Learning rate")
    seed = forms.IntegerField(min_value=0, required=False)
    precision = forms.ChoiceField(
        choices=[("", "—")] + [(p, p) for p in hp.PRECISIONS],
        required=False,
        help_text="auto: bfloat16 arithmetic where the CPU or GPU has it (about twice as fast), else float32.",
    )

    framing = forms.ChoiceField(
        choices=[("", "—"), ("on", "on"), ("off", "off")],
        required=False,
        help_text="Crop each image to its item on the catalogue's background before the model sees it "
        "(default: on, except the Fashion-MNIST-sized classifier). On copes with off-centre, "
        "smaller and inverted photos.",
    )

    OVERRIDES = ("epochs", "image_size", "dim", "batch_size", "lr", "seed", "precision", "framing")

    def clean(self):
        data = super().clean()
        if data.get("variant") and data.get("architecture") != "classifier":
            self.add_error("variant", "A variant applies to the classifier only.")
        if not self.errors and data.get("architecture"):
            try:
                defaults(data["architecture"], data.get("variant") or None, **self.overrides())
            except ValueError as exc:
                raise forms.ValidationError(str(exc)) from exc
        return data

    def chosen_architecture(self) -> str | None:
        return self.cleaned_data.get("architecture") or None

    def overrides(self) -> dict:
        out = {k: self.cleaned_data[k] for k in self.OVERRIDES if self.cleaned_data.get(k) not in (None, "")}
        if "framing" in out:
            out["framing"] = out["framing"] == "on"
        return out
