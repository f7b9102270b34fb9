def product_similar(*, product, k=8, same_category=False):
    return None
