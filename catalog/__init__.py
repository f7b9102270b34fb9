"""The catalogue: Category, Product, ProductImage, the one image decoder, importers, keyword search,
the category and price filters, list/detail pages and GET /api/products. May import config only."""
