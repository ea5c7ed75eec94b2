"""Provider adapters: one per wire format, behind `base.Provider`."""
