"""The identity cache: ScaiKey's partners, tenants, users, groups and applications mirrored locally."""
