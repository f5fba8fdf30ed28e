"""Custom Rasa components of 警民通: sentence embeddings and the classifier that uses them."""
