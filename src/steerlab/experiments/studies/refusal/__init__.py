"""Seeds 000/001: contrastive activation addition for refusal and the fair 4-way comparison (kind ``refusal_study``)."""
