"""File handling below the services: the on-disk blob store, streamed multipart uploads, content sniffing,
safe file names and image thumbnails. Nothing here touches the database or knows about users."""
