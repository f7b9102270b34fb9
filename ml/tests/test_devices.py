"""Which device a process computes on, and the precision and batch size that follow from it."""

from __future__ import annotations

import unittest

import keras

import numpy as np

from ml.architectures import CatalogueLabels, build, defaults
from ml.devices import CPU_EMBEDDING_BATCH_SIZE, ComputeDevice, device_detect
from ml.precision import auto_policy


class AutoPolicyTests(unittest.TestCase):
    def test_a_gpu_with_tensor_cores_trains_in_float16_an_older_one_in_float32(self):
        self.assertEqual(auto_policy(gpu_capability=(8, 9), cpu_bfloat16=False), "mixed_float16")
        self.assertEqual(auto_policy(gpu_capability=(7, 0), cpu_bfloat16=True), "mixed_float16")
        self.assertEqual(auto_policy(gpu_capability=(6, 1), cpu_bfloat16=True), "float32")

    def test_without_a_gpu_the_cpu_decides_as_before(self):
        self.assertEqual(auto_policy(gpu_capability=None, cpu_bfloat16=True), "mixed_bfloat16")
        self.assertEqual(auto_policy(gpu_capability=None, cpu_bfloat16=False), "float32")

    def test_mixed_float16_builds_with_float32_weights_and_outputs_and_compiles_with_loss_scaling(self):
        hp = defaults("classifier", "cnn", image_size=16, dim=8, precision="mixed_float16")
        labels = CatalogueLabels(categories=np.arange(4) % 2, products=np.arange(4), category_names=["a", "b"])
        built = build("classifier", hp, labels)
        self.assertEqual({w.dtype for w in built.trainer.weights}, {"float32"})
        self.assertIn("float16", {layer.compute_dtype for layer in built.trainer.layers})
        self.assertEqual(built.embedder.outputs[0].dtype, "float32")
        built.trainer.compile(optimizer=keras.optimizers.Adam(1e-3), loss=built.loss, loss_weights=built.loss_weights)
        self.assertIsInstance(built.trainer.optimizer, keras.optimizers.LossScaleOptimizer)


class DetectTests(unittest.TestCase):
    def test_this_machine_embeds_on_the_cpu_and_says_why(self):
        device = device_detect()
        self.assertEqual(device.kind, "CPU")  # the test machines have no GPU (CUDA_VISIBLE_DEVICES too)
        self.assertEqual(device.embedding_batch_size, CPU_EMBEDDING_BATCH_SIZE)
        self.assertTrue(device.note)
        self.assertIn("CPU", device.describe())
        self.assertEqual(ComputeDevice.from_dict({**device.to_dict(), "unknown_key": 1}), device)
