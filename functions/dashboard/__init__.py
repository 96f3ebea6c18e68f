"""The read-only dashboard: `app.Dashboard` (the HTTP handler), `views` (pure), `reader` (Firestore)."""
