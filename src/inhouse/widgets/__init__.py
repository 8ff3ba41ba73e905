"""Embeddable chat widgets: their rows, origins, branding, publishable tokens and frame tickets."""
