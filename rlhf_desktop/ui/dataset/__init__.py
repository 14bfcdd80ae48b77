"""The dataset page: the preference pairs, their filters, import and export."""
