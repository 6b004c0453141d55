"""What comes from outside: uploaded archives (safely unpacked), upload quotas, the public dataset
download.
"""
