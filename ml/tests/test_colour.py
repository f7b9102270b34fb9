import unittest

import numpy as np

from ml.colour import choose_groups, colour_histograms, product_colours, silhouette

PALETTE = np.array([(200, 30, 30), (30, 160, 60), (40, 70, 200), (230, 210, 40), (30, 30, 30), (235, 235, 235)])


def catalogue(products_per_colour: int = 5, photos: int = 3, seed: int = 0):
    """Items of six colours on a grey background, each photo under its own light, with a mask."""
    rng = np.random.default_rng(seed)
    images, masks, products, colours = [], [], [], []
    for colour, rgb in enumerate(PALETTE):
        for p in range(products_per_colour):
            product = colour * products_per_colour + p
            base = np.clip(rgb + rng.normal(0, 6, 3), 0, 255)  # products of one colour differ a little
            for _ in range(photos):
                image = np.full((16, 16, 3), 128, np.uint8)
                mask = np.zeros((16, 16), np.uint8)
                mask[3:13, 4:12] = 255
                image[3:13, 4:12] = np.clip(base * rng.uniform(0.9, 1.08) + rng.normal(0, 4, (10, 8, 3)), 0, 255)
                images.append(image)
                masks.append(mask)
                products.append(product)
                colours.append(colour)
    return np.stack(images), np.stack(masks), np.array(products), np.array(colours)


class ColourGroupTests(unittest.TestCase):
    def test_histograms_count_the_item_not_the_background(self):
        images, masks, _, _ = catalogue(1, 1)
        h = colour_histograms(images, masks)
        self.assertEqual(h.shape, (len(PALETTE), 64))
        np.testing.assert_allclose((h**2).sum(axis=1), 1.0, atol=1e-5)
        grey_cell = (2 * 4 + 2) * 4 + 2  # the background's 128 falls in cell (2, 2, 2)
        self.assertTrue((h[:, grey_cell] ** 2 < 0.01).all())

    def test_products_of_one_colour_share_a_group_and_colours_do_not(self):
        images, masks, products, colours = catalogue()
        usable = np.ones(len(images), bool)
        groups = product_colours(images, masks, products, usable, seed=3)
        for product in np.unique(products):  # every photo of a product has its product's group
            self.assertEqual(len(np.unique(groups[products == product])), 1)
        same_group = groups[:, None] == groups[None]
        same_colour = colours[:, None] == colours[None]
        np.testing.assert_array_equal(same_group, same_colour)
        np.testing.assert_array_equal(groups, product_colours(images, masks, products, usable, seed=3))

    def test_the_number_of_groups_follows_the_catalogue(self):
        images, masks, products, _ = catalogue()
        h = colour_histograms(images, masks)
        per_product = np.stack([h[products == p].mean(axis=0) for p in np.unique(products)])
        k, centres = choose_groups(per_product, seed=0)
        self.assertEqual((k, centres.shape), (len(PALETTE), (len(PALETTE), 64)))
        four = choose_groups(per_product[: 4 * 5], seed=0)[0]  # the first four colours only
        self.assertEqual(four, 4)

    def test_silhouette_prefers_the_true_grouping(self):
        rng = np.random.default_rng(0)
        x = np.concatenate([rng.normal(0, 0.1, (20, 2)), rng.normal(3, 0.1, (20, 2))])
        truth = np.repeat([0, 1], 20)
        self.assertGreater(silhouette(x, truth), 0.9)
        self.assertLess(silhouette(x, rng.integers(0, 2, 40)), 0.2)
        self.assertEqual(silhouette(x, np.zeros(40, int)), -1.0)

    def test_unusable_photos_and_tiny_catalogues(self):
        images, masks, products, _ = catalogue(1, 1)  # six products: too few to group
        usable = np.ones(len(images), bool)
        np.testing.assert_array_equal(product_colours(images, masks, products, usable), 0)
        images, masks, products, colours = catalogue()
        usable = np.ones(len(images), bool)
        usable[::3] = False  # a product's other photos still give it a colour
        groups = product_colours(images, masks, products, usable, seed=1)
        np.testing.assert_array_equal(groups[:, None] == groups[None], colours[:, None] == colours[None])
        np.testing.assert_array_equal(product_colours(images, masks, products, np.zeros(len(images), bool)), 0)
