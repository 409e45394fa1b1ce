"""The thing registry (XEP-0347) and provisioning service (XEP-0324) of ``ncap-registry``."""
