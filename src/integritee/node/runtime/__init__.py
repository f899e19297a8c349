"""The parentchain runtime: pallets, dispatch, executive, derived metadata."""
