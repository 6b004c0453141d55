"""The networks: one spec per backbone, building them with their weights, the classifier, the feature
cache, inference.
"""
